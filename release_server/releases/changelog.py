"""Changelogs: Markdown in, sanitised HTML out, rendered once when a release is published.

Markdown is parsed by cmark-gfm (GitHub's C implementation of CommonMark with tables,
strikethrough and autolinks), which runs in time linear in its input, including
pathological inputs; the HTML (including raw HTML written in the Markdown) is then cleaned
by nh3, an allow-list sanitiser, so no script reaches the console or the portal.

HTML parsers spend time proportional to the nesting depth for every element, so a
changelog whose structure nests deeper than :data:`MAX_NESTING` (blockquotes in
blockquotes, lists in lists, emphasis in emphasis) is refused with
:class:`ChangelogTooDeepError` before it is sanitised. The depth is measured on cmark's
output in one pass. The publish stores the result (``Release.changelog_html``), so
reading a release never renders anything.
"""
from __future__ import annotations

import re

import cmarkgfm
import nh3
from cmarkgfm.cmark import Options

from ..errors import ValidationError

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "strong", "em", "b", "i", "code",
    "pre", "blockquote", "a", "table", "thead", "tbody", "tr", "th", "td", "del", "sup", "sub",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}

#: Deepest nesting of HTML elements a changelog may produce (a list item in a list is two).
MAX_NESTING = 40
#: Largest HTML a changelog may render to before sanitising (ordinary Markdown grows 1-5 times).
MAX_HTML_CHARS = 2_000_000

_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr", "area", "base", "col", "embed", "source",
                   "track", "param"})
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*?(/?)>")
# container markers (quotes, list items) and up to three spaces, then what would open an HTML block
_BLOCK_HTML = re.compile(r"^((?:[ ]{0,3}(?:>|[*+-][ \t]|\d{1,9}[.)][ \t]))*[ ]{0,3})(<[A-Za-z/!?])")
_FENCE = re.compile(r"^(?:[ ]{0,3}(?:>|[*+-][ \t]|\d{1,9}[.)][ \t]))*[ ]{0,3}(`{3,}|~{3,})")


class ChangelogTooDeepError(ValidationError):
    code = "changelog_too_deep"

    def __init__(self, depth: int, limit: int) -> None:
        super().__init__(f"the changelog nests {depth} levels deep (lists, quotes or emphasis); at most {limit} "
                         "are allowed", field="changelog")
        self.depth, self.limit = depth, limit


class ChangelogTooLargeError(ValidationError):
    code = "changelog_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the changelog renders to {size} characters of HTML; at most {limit} are allowed",
                         field="changelog")
        self.size, self.limit = size, limit


def nesting_depth(html: str, stop_above: int | None = None) -> int:
    """Deepest element nesting of the HTML, in one linear pass.

    An end tag closes only the element it names when that element is the innermost open
    one, so stray or misnested end tags in raw HTML never make the figure smaller than
    what an HTML parser would build.
    """
    stack: list[str] = []
    deepest = 0
    for m in _TAG.finditer(html):
        name = m.group(2).lower()
        if m.group(1):
            if stack and stack[-1] == name:
                stack.pop()
        elif name not in _VOID and not m.group(3):
            stack.append(name)
            if len(stack) > deepest:
                deepest = len(stack)
                if stop_above is not None and deepest > stop_above:
                    break
    return deepest


def _no_html_blocks(md_text: str) -> str:
    """Escape the ``<`` that would open a raw HTML block, so the rest of its line stays Markdown.

    Raw HTML inside a line is kept (and sanitised); a line *starting* with a tag would
    otherwise swallow the Markdown after it. Fenced code is left alone. Linear.
    """
    out = []
    fence: str | None = None
    for line in md_text.splitlines(keepends=True):
        m = _FENCE.match(line)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            out.append(line)
            continue
        if fence is None:
            h = _BLOCK_HTML.match(line)
            if h:
                line = line[:h.start(2)] + "\\" + line[h.start(2):]
        out.append(line)
    return "".join(out)


def markdown_to_html(md_text: str) -> str:
    """cmark-gfm's HTML for the Markdown, raw HTML kept (nh3 removes what is not allowed), unsanitised."""
    return cmarkgfm.github_flavored_markdown_to_html(
        _no_html_blocks(md_text or ""), options=Options.CMARK_OPT_VALIDATE_UTF8 | Options.CMARK_OPT_UNSAFE)


def render(md_text: str, *, max_nesting: int = MAX_NESTING) -> str:
    """Markdown to sanitised HTML.

    ``ChangelogTooDeepError`` when it nests deeper than ``max_nesting``, ``ChangelogTooLargeError`` when
    its HTML would exceed :data:`MAX_HTML_CHARS`; both before the sanitiser runs.
    """
    html = markdown_to_html(md_text)
    if len(html) > MAX_HTML_CHARS:
        raise ChangelogTooLargeError(len(html), MAX_HTML_CHARS)
    depth = nesting_depth(html, stop_above=max_nesting)
    if depth > max_nesting:
        raise ChangelogTooDeepError(depth, max_nesting)
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                     url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow")
