// Progressive enhancement only (every page works without script): after a refused form post,
// move the keyboard focus to the summary of its errors, so screen readers announce it first.
document.addEventListener("DOMContentLoaded", function () {
  var summary = document.querySelector(".form-errors");
  if (summary) { summary.focus(); }
});
