"""Changelogs: Markdown in, sanitised HTML out.

Markdown is rendered with Python-Markdown and then cleaned with nh3 (an allow-list
HTML sanitiser), so a changelog can never carry script into the console or portal.
"""
from __future__ import annotations

import markdown
import nh3

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "strong", "em", "b", "i", "code",
    "pre", "blockquote", "a", "table", "thead", "tbody", "tr", "th", "td", "del", "sup", "sub",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


def render(md_text: str) -> str:
    """Markdown to sanitised HTML."""
    html = markdown.markdown(md_text or "", extensions=["tables", "fenced_code", "sane_lists"])
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                     url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow")
