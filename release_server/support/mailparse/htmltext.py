"""Mail HTML: sanitising with an allow-list (:func:`sanitize_html`) and rendering as plain text
(:func:`html_to_text`), both linear in the size of the HTML."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

from .headers import _collapse
from .text import _tidy_text

_ALLOWED_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "cite", "code", "col",
    "colgroup", "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s",
    "samp", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "tt", "u", "ul",
})
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan", "align", "valign"},
    "th": {"colspan", "rowspan", "align", "valign"},
    "ol": {"start", "type"},
    "table": {"border", "cellpadding", "cellspacing"},
    "abbr": {"title"},
    "q": {"cite"},
}
# Their content is dropped along with the tag.
_CLEAN_CONTENT_TAGS = frozenset({
    "script", "style", "title", "noscript", "template", "iframe", "object", "embed",
    "applet", "svg", "math", "textarea", "select", "xml",
})


def _html_attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    """Keep only links with safe schemes and only ``cid:`` images.

    Remote images are removed: they leak that (and when) the mail was read.
    """
    lowered = value.strip().lower()
    if tag == "img" and attribute == "src":
        return value.strip() if lowered.startswith("cid:") else None
    if attribute in ("href", "cite"):
        return value.strip() if lowered.startswith(("http://", "https://", "mailto:")) else None
    return value


#: Elements open inside each other that the sanitiser is given; deeper start tags are dropped
#: (an HTML tree builder checks the open elements for every tag, so depth costs time).
MAX_HTML_DEPTH = 100
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]{0,31})\b[^>]{0,4096}>?")
_VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                        "source", "track", "wbr", "basefont", "bgsound", "frame", "keygen"})
# A start tag of these closes an open one of the same name (an unclosed <li>, <p>, <td> ...).
_SIBLING_TAGS = frozenset({"li", "p", "td", "th", "tr", "dt", "dd", "option", "tbody", "thead", "tfoot"})


def _bound_nesting(html: str) -> str:
    """Drop start tags nested deeper than :data:`MAX_HTML_DEPTH` (their text stays), in one pass."""
    out: list[str] = []
    open_tags: list[str] = []
    pos = 0
    changed = False
    for match in _TAG.finditer(html):
        closing, name = match.group(1), match.group(2).lower()
        if closing:
            if name in open_tags:
                k = len(open_tags) - 1 - open_tags[::-1].index(name)
                del open_tags[k:]
            continue
        if name in _VOID_TAGS or match.group(0).endswith("/>"):
            continue
        if name in _SIBLING_TAGS and open_tags and open_tags[-1] == name:
            continue
        if len(open_tags) >= MAX_HTML_DEPTH:
            out.append(html[pos:match.start()])
            pos = match.end()
            changed = True
            continue
        open_tags.append(name)
    if not changed:
        return html
    out.append(html[pos:])
    return "".join(out)


def sanitize_html(html: str) -> str:
    """Sanitise mail HTML with a conservative allow-list (no scripts, styles,
    forms, frames or remote images; ``cid:`` images are kept)."""
    return nh3.clean(
        _bound_nesting(html),
        tags=set(_ALLOWED_TAGS),
        clean_content_tags=set(_CLEAN_CONTENT_TAGS),
        attributes={tag: set(attrs) for tag, attrs in _ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_html_attribute_filter,
        url_schemes={"http", "https", "mailto", "cid"},
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    ).strip()


_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
                             "table", "pre", "dl", "center"})
_LINE_TAGS = frozenset({"div", "tr", "dt", "dd", "caption", "ul", "ol", "li"})


_BLANKS = re.compile(r"[ \t\r\n\f]+")


class _TextExtractor(HTMLParser):
    """Render (sanitised) HTML as plain text with paragraphs and list items."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._pre = 0
        self._lists: list[list[int | None]] = []  # per list: [next number or None]
        self._cell = 0
        self._links: list[tuple[str | None, int]] = []

    # -- output helpers
    def _break(self, count: int) -> None:
        if not self._out:
            return
        # Drop trailing spaces before the break.
        while self._out and self._out[-1].endswith(" ") and not self._pre:
            self._out[-1] = self._out[-1].rstrip(" ")
            if not self._out[-1]:
                self._out.pop()
        joined = "".join(self._out[-4:])
        have = len(joined) - len(joined.rstrip("\n"))
        if have < count:
            self._out.append("\n" * (count - have))

    def _at_line_start(self) -> bool:
        return not self._out or "".join(self._out[-2:]).endswith("\n")

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._out.append("\n")
        elif tag == "hr":
            self._break(1)
            self._out.append("-" * 20)
            self._break(1)
        elif tag in ("ul", "ol"):
            self._break(1 if self._lists else 2)
            start = 1
            for name, value in attrs:
                if name == "start" and value and value.strip().isdigit():
                    start = int(value)
            self._lists.append([start if tag == "ol" else None])
        elif tag == "li":
            self._break(1)
            depth = max(len(self._lists), 1)
            marker = "- "
            if self._lists and self._lists[-1][0] is not None:
                number = self._lists[-1][0]
                marker = f"{number}. "
                self._lists[-1][0] = number + 1
            self._out.append("  " * (min(depth, 10) - 1) + marker)
        elif tag in ("td", "th"):
            if self._cell:
                self._out.append("\t")
            self._cell += 1
        elif tag == "tr":
            self._break(1)
            self._cell = 0
        elif tag == "pre":
            self._break(2)
            self._pre += 1
        elif tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)
        elif tag == "a":
            href = dict(attrs).get("href")
            self._links.append((href, len(self._out)))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self._out.append(f"[{_collapse(alt)}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._break(1 if self._lists else 2)
        elif tag == "pre":
            self._pre = max(self._pre - 1, 0)
            self._break(2)
        elif tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS or tag == "tr":
            self._break(1)
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            if href:
                # Only the label's beginning: nested links must not rescan the text.
                label = "".join(self._out[start:start + 64])
                target = href[7:] if href.lower().startswith("mailto:") else href
                if target and label.strip() and target not in label:
                    self._out.append(f"<{target}>" if self._at_line_start() else f" <{target}>")

    def handle_data(self, data: str) -> None:
        if self._pre:
            self._out.append(data.replace("\r\n", "\n"))
            return
        text = _BLANKS.sub(" ", data)
        if self._at_line_start():
            text = text.lstrip(" ")
        elif self._out and self._out[-1].endswith(" ") and text.startswith(" "):
            text = text[1:]
        if text:
            self._out.append(text)

    def text(self) -> str:
        return "".join(self._out)


def html_to_text(html: str) -> str:
    """Convert HTML to plain text, keeping paragraphs, line breaks and list items."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # pragma: no cover - HTMLParser is lenient
        pass
    return _tidy_text(parser.text().replace("\xa0", " "))
