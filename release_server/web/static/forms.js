// Progressive enhancement only (every page works without script): after a refused form post,
// move the keyboard focus to the summary of its errors, so screen readers announce it first.
document.addEventListener("DOMContentLoaded", function () {
  var summary = document.querySelector(".form-errors");
  if (summary) { summary.focus(); }
});

// The ticket queue: one box chooses every ticket on the page.
document.addEventListener("DOMContentLoaded", function () {
  var all = document.getElementById("select-all");
  if (!all) { return; }
  all.addEventListener("change", function () {
    document.querySelectorAll("input[name=tickets]").forEach(function (box) { box.checked = all.checked; });
  });
});

// The composer: a canned reply chosen from the list is put into the message (it stays editable);
// the submit button says what the chosen mode does.
document.addEventListener("DOMContentLoaded", function () {
  var canned = document.getElementById("compose-canned");
  var body = document.getElementById("compose-body");
  if (canned && body) {
    canned.addEventListener("change", function () {
      var opt = canned.options[canned.selectedIndex];
      var text = opt ? opt.getAttribute("data-body") : null;
      if (text) { body.value = body.value ? body.value + "\n\n" + text : text; body.focus(); }
      canned.selectedIndex = 0;
    });
  }
  var send = document.getElementById("compose-send");
  var modes = document.querySelectorAll("input[name=mode]");
  function label() {
    var on = document.querySelector("input[name=mode]:checked");
    if (send && on && on.getAttribute("data-send")) { send.textContent = on.getAttribute("data-send"); }
    var form = document.getElementById("composer");
    if (form && on) { form.setAttribute("data-mode", on.value); }
  }
  modes.forEach(function (m) { m.addEventListener("change", label); });
  label();
});
