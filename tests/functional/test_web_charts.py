"""The server-side SVG charts (release_server.web.charts): pure functions, no app needed."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from release_server.web import charts

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(str(svg))
    assert root.tag == f"{NS}svg" and root.get("role") == "img" and root.get("viewBox")
    assert root.find(f"{NS}title") is not None and root.find(f"{NS}desc") is not None
    return root


@pytest.mark.parametrize("maximum, expected", [
    (0, [0.0, 1.0]), (1, [0, 0.25, 0.5, 0.75, 1.0]), (7, [0, 2, 4, 6, 8]), (10, [0, 2.5, 5, 7.5, 10]),
    (37, [0, 10, 20, 30, 40]), (1234, [0, 500, 1000, 1500]), (0.18, [0, 0.05, 0.1, 0.15, 0.2]),
])
def test_nice_ticks(maximum: float, expected: list[float]) -> None:
    assert charts.nice_ticks(maximum) == pytest.approx(expected)


def test_ticks_always_cover_the_maximum() -> None:
    for m in (0.3, 3, 9.99, 11, 99, 101, 5555):
        ticks = charts.nice_ticks(m)
        assert ticks[0] == 0 and ticks[-1] >= m and len(ticks) <= 6


def test_stacked_area_draws_one_band_per_series_in_order() -> None:
    svg = charts.stacked_area(["1 Jan", "2 Jan", "3 Jan"], [charts.Series("1.0", [5, 3, 1]),
                                                            charts.Series("2.0", [0, 2, 4])], title="Adoption")
    root = parse(svg)
    paths = root.findall(f"{NS}path")
    assert len(paths) == 2
    assert [p.find(f"{NS}title").text for p in paths] == ["1.0: 1", "2.0: 4"]
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "1 Jan" in texts and "3 Jan" in texts and "1.0" in texts and "2.0" in texts
    assert "style=" not in str(svg)  # presentation attributes only: works under a strict CSP


def test_a_single_day_still_draws() -> None:
    root = parse(charts.stacked_area(["today"], [charts.Series("1.0", [3])], title="t"))
    assert len(root.findall(f"{NS}path")) == 1


def test_stacked_bars_skip_zeros_and_stack() -> None:
    svg = charts.stacked_bars(["a", "b"], [charts.Series("incident", [1, 0]), charts.Series("problem", [2, 3])],
                              title="Tickets")
    rects = [r for r in parse(svg).findall(f"{NS}rect") if r.find(f"{NS}title") is not None]
    assert len(rects) == 3
    assert sorted(r.find(f"{NS}title").text for r in rects) == ["a · incident: 1", "a · problem: 2", "b · problem: 3"]


def test_bars_with_rate_marks_failures_threshold_and_rate() -> None:
    svg = charts.bars_with_rate(["d1", "d2", "d3"], [10, 0, 20], [1, 0, 10], title="Rollout", threshold=0.05)
    root = parse(svg)
    fails = [r for r in root.findall(f"{NS}rect") if r.get("class") == "fail"]
    assert len(fails) == 2
    assert len(root.findall(f"{NS}circle")) == 2  # no rate on a day without attempts
    assert any(line.get("stroke-dasharray") for line in root.findall(f"{NS}line"))
    assert any(t.text and t.text.endswith("%") for t in root.iter(f"{NS}text"))


@pytest.mark.parametrize("make", [
    lambda: charts.stacked_area([], [], title="x", empty_text="Nothing yet"),
    lambda: charts.stacked_area(["a"], [charts.Series("v", [0])], title="x", empty_text="Nothing yet"),
    lambda: charts.stacked_bars(["a"], [], title="x", empty_text="Nothing yet"),
    lambda: charts.bars_with_rate(["a"], [0], [0], title="x", empty_text="Nothing yet"),
])
def test_no_data_says_so(make) -> None:  # noqa: ANN001
    root = parse(make())
    assert "Nothing yet" in [t.text for t in root.iter(f"{NS}text")]


def test_every_text_is_escaped() -> None:
    evil = '<script>alert("x")</script>&'
    svg = str(charts.stacked_area([evil, "b"], [charts.Series(evil, [1, 2])], title=evil))
    assert "<script>" not in svg
    root = parse(svg)  # still well-formed XML
    assert root.find(f"{NS}title").text == evil
    svg = str(charts.bars_with_rate([evil], [3], [1], title=evil, attempts_name=evil, threshold=0.5))
    assert "<script>" not in svg
    parse(svg)


def test_many_labels_are_thinned_but_first_and_last_kept() -> None:
    labels = [f"d{i}" for i in range(60)]
    root = parse(charts.stacked_bars(labels, [charts.Series("k", [1] * 60)], title="t"))
    shown = [t.text for t in root.iter(f"{NS}text") if t.text and t.text.startswith("d")]
    assert 3 < len(shown) < 20 and shown[0] == "d0" and shown[-1] == "d59"
