"""Changelog rendering: sanitised, nesting bounded, the same HTML as the API stores."""
from __future__ import annotations

import pytest

from release_server.releases.changelog import MAX_NESTING, ChangelogTooDeepError, nesting_depth, render


def test_markdown_is_rendered_and_sanitised():
    html = render("# Fixes\n\n* <script>alert(1)</script> faster *search*\n* [x](javascript:alert(2)) "
                  "[ok](https://example.com)\n\n|a|b|\n|-|-|\n|1|2|\n\n```\ncode <b>\n```\n")
    assert "<h1>Fixes</h1>" in html and "<em>search</em>" in html and "<table>" in html
    assert "<script" not in html and "javascript:" not in html
    assert 'href="https://example.com"' in html and "code &lt;b&gt;" in html


@pytest.mark.parametrize("text", [
    ">" * 200,                                                    # quotes in quotes
    "".join("  " * i + "* item\n" for i in range(100)),         # lists in lists
    "".join("- " * i + "x\n" for i in range(1, 120)),            # list markers on one line
    "*a " * 60 + "x" + " a*" * 60,                                # emphasis in emphasis
])
def test_nesting_deeper_than_the_limit_is_refused(text: str):
    with pytest.raises(ChangelogTooDeepError) as exc:
        render(text)
    assert exc.value.field == "changelog" and exc.value.limit == MAX_NESTING


def test_nesting_within_the_limit_is_rendered():
    html = render(">" * (MAX_NESTING - 2) + " deep but fine")
    assert html.count("<blockquote>") == MAX_NESTING - 2 and "deep but fine" in html


def test_depth_is_measured_on_the_html():
    assert nesting_depth("<p>a<br>b</p><ul><li><p><em>x</em></p></li></ul><hr />") == 4
    assert nesting_depth("<blockquote>" * 100, stop_above=10) == 11
