"""Small charts drawn on the server as inline SVG: no script, no network, no build step.

Three shapes cover what the console shows:

* :func:`stacked_area` - how many installations run each version, day by day;
* :func:`bars_with_rate` - a rollout's attempts per day (failed part in red) with the
  cumulative failure rate (what the halt rule judges) as a line on a right-hand axis and
  the halting threshold dashed;
* :func:`stacked_bars` - counts per day split by a category (tickets opened by kind).

Every function takes plain numbers and already-formatted labels (so the caller picks
the language and date format) and returns :class:`markupsafe.Markup`. Every piece of
text is escaped; colours are presentation attributes (not ``style``), so the pages'
Content-Security-Policy needs no ``unsafe-inline``. The SVG scales to its container
(``viewBox``, width 100 %), has a ``<title>`` and ``<desc>`` for screen readers, and
each mark has a ``<title>`` tooltip with its exact figure.
"""
from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#16a34a", "#b45309", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#ea580c", "#475569",
           "#0d9488", "#a16207", "#4f46e5")
FAIL_COLOUR = "#dc2626"
ATTEMPT_COLOUR = "#3b82f6"
TEXT_COLOUR = "#334155"
GRID_COLOUR = "#e2e8f0"


@dataclass(frozen=True)
class Series:
    """One named row of values, one value per label."""

    name: str
    values: Sequence[float]
    colour: str | None = None


def nice_ticks(maximum: float, count: int = 4, *, integer: bool = False) -> list[float]:
    """Round axis ticks from 0 covering ``maximum``: steps of 1, 2, 2.5 or 5 times a power of ten
    (whole steps only with ``integer``, for counts: never "0.5 attempts")."""
    if not maximum or maximum <= 0 or math.isnan(maximum):
        return [0.0, 1.0]
    raw = maximum / count
    if integer:
        raw = max(raw, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = magnitude
    for m in ((1, 2, 5, 10) if integer and magnitude < 10 else (1, 2, 2.5, 5, 10)):
        step = m * magnitude
        if step >= raw:
            break
    top = math.ceil(maximum / step - 1e-9) * step
    n = int(round(top / step))
    return [round(i * step, 10) for i in range(n + 1)]


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if not float(v).is_integer() else str(int(v))


def _fmt_tick(v: float, percent: bool = False) -> str:
    if percent:
        return f"{_num(round(v * 100, 1))}%"
    return _num(round(v, 2))


class _Canvas:
    def __init__(self, title: str, summary: str, width: int, height: int, n_labels: int, legend: Sequence[tuple[str, str]],
                 right_axis: bool = False) -> None:
        self.uid = "c" + uuid.uuid4().hex[:8]
        self.title, self.summary = title, summary
        self.width, self.height = width, height
        self.left, self.right = 44, (52 if right_axis else 14)
        self.top = 12
        self.legend_rows = self._legend_layout(legend)
        self.bottom = 34 + 18 * len(self.legend_rows)
        self.plot_w = width - self.left - self.right
        self.plot_h = height - self.top - self.bottom
        self.n = max(n_labels, 1)
        self.parts: list[str] = []

    def _legend_layout(self, legend: Sequence[tuple[str, str]]) -> list[list[tuple[str, str, float]]]:
        rows: list[list[tuple[str, str, float]]] = []
        x, row = 0.0, []  # type: ignore[var-annotated]
        limit = self.width - 60
        for name, colour in legend:
            w = 22 + 6.6 * min(len(name), 40)
            if row and x + w > limit:
                rows.append(row)
                row, x = [], 0.0
            row.append((name, colour, x))
            x += w + 10
        if row:
            rows.append(row)
        return rows

    # geometry
    def x_band(self, i: int) -> tuple[float, float]:
        band = self.plot_w / self.n
        return self.left + i * band, band

    def x_point(self, i: int) -> float:
        if self.n == 1:
            return self.left + self.plot_w / 2
        return self.left + i * self.plot_w / (self.n - 1)

    def y(self, v: float, top: float) -> float:
        return self.top + self.plot_h - (v / top if top else 0) * self.plot_h

    # pieces
    def add(self, svg: str) -> None:
        self.parts.append(svg)

    def grid(self, ticks: Sequence[float], percent: bool = False, right: bool = False) -> None:
        top = ticks[-1]
        for t in ticks:
            yy = self.y(t, top)
            if not right:
                self.add(f'<line x1="{self.left}" x2="{self.left + self.plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" '
                         f'stroke="{GRID_COLOUR}" stroke-width="1"/>')
                self.add(f'<text x="{self.left - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11" '
                         f'fill="{TEXT_COLOUR}">{escape(_fmt_tick(t, percent))}</text>')
            else:
                self.add(f'<text x="{self.left + self.plot_w + 6}" y="{yy + 4:.1f}" text-anchor="start" '
                         f'font-size="11" fill="{FAIL_COLOUR}">{escape(_fmt_tick(t, percent))}</text>')

    def x_labels(self, labels: Sequence[str], centred: bool) -> None:
        every = max(1, math.ceil(len(labels) / max(1, self.plot_w // 70)))
        base = self.top + self.plot_h
        self.add(f'<line x1="{self.left}" x2="{self.left + self.plot_w}" y1="{base:.1f}" y2="{base:.1f}" '
                 f'stroke="#94a3b8" stroke-width="1"/>')
        shown = [i for i in range(len(labels)) if i % every == 0]
        last = len(labels) - 1
        if shown and shown[-1] != last:
            if last - shown[-1] >= every:
                shown.append(last)
            else:
                shown[-1] = last
        for i in shown:
            lab = labels[i]
            anchor = "middle"
            if centred:
                x0, band = self.x_band(i)
                xx = x0 + band / 2
            else:
                xx = self.x_point(i)
                if i == last and len(labels) > 1:
                    anchor = "end"
                elif i == 0 and len(labels) > 1:
                    anchor = "start"
            self.add(f'<text x="{xx:.1f}" y="{base + 16:.1f}" text-anchor="{anchor}" font-size="11" '
                     f'fill="{TEXT_COLOUR}">{escape(lab)}</text>')

    def legend(self) -> None:
        y0 = self.height - 18 * len(self.legend_rows) + 2
        for r, row in enumerate(self.legend_rows):
            for name, colour, x in row:
                xx = self.left + x
                yy = y0 + r * 18
                self.add(f'<rect x="{xx:.1f}" y="{yy:.1f}" width="12" height="12" rx="2" fill="{escape(colour)}"/>'
                         f'<text x="{xx + 17:.1f}" y="{yy + 10.5:.1f}" font-size="12" fill="{TEXT_COLOUR}">'
                         f'{escape(name[:40])}</text>')

    def render(self) -> Markup:
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {self.width} {self.height}" '
                f'width="100%" preserveAspectRatio="xMidYMid meet" role="img" '
                f'aria-labelledby="{self.uid}-t {self.uid}-d" font-family="system-ui, sans-serif">'
                f'<title id="{self.uid}-t">{escape(self.title)}</title><desc id="{self.uid}-d">'
                f'{escape(self.summary)}</desc>')
        return Markup(head + "".join(self.parts) + "</svg>")  # noqa: S704 - every text part escaped above


def _empty(title: str, empty_text: str, width: int, height: int) -> Markup:
    c = _Canvas(title, empty_text, width, height, 1, [])
    c.add(f'<rect x="1" y="1" width="{width - 2}" height="{height - 2}" rx="6" fill="#f8fafc" stroke="{GRID_COLOUR}"/>')
    c.add(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" font-size="14" '
          f'fill="#64748b">{escape(empty_text)}</text>')
    return c.render()


def _colours(series: Sequence[Series]) -> list[str]:
    return [s.colour or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]


def stacked_area(labels: Sequence[str], series: Sequence[Series], *, title: str, empty_text: str = "No data",
                 width: int = 720, height: int = 260) -> Markup:
    """Values stacked bottom-up in the given order (e.g. oldest version at the bottom)."""
    n = len(labels)
    totals = [sum(float(s.values[i]) for s in series) for i in range(n)]
    if not n or not series or max(totals, default=0) <= 0:
        return _empty(title, empty_text, width, height)
    colours = _colours(series)
    summary = "; ".join(f"{s.name}: {_num(float(s.values[-1]))}" for s in series) + f" ({labels[-1]})"
    c = _Canvas(title, summary, width, height, n, [(s.name, col) for s, col in zip(series, colours)])
    ticks = nice_ticks(max(totals))
    top = ticks[-1]
    c.grid(ticks)
    below = [0.0] * n
    for s, colour in zip(series, colours):
        above = [below[i] + float(s.values[i]) for i in range(n)]
        if n == 1:  # a single day: a band across the plot
            pts_top = [(c.left, c.y(above[0], top)), (c.left + c.plot_w, c.y(above[0], top))]
            pts_bottom = [(c.left + c.plot_w, c.y(below[0], top)), (c.left, c.y(below[0], top))]
        else:
            pts_top = [(c.x_point(i), c.y(above[i], top)) for i in range(n)]
            pts_bottom = [(c.x_point(i), c.y(below[i], top)) for i in reversed(range(n))]
        d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in pts_top + pts_bottom) + " Z"
        c.add(f'<path d="{d}" fill="{escape(colour)}" fill-opacity="0.85" stroke="#ffffff" stroke-width="0.5">'
              f'<title>{escape(s.name)}: {escape(_num(float(s.values[-1])))}</title></path>')
        below = above
    c.x_labels(labels, centred=False)
    c.legend()
    return c.render()


def stacked_bars(labels: Sequence[str], series: Sequence[Series], *, title: str, empty_text: str = "No data",
                 width: int = 720, height: int = 240) -> Markup:
    n = len(labels)
    totals = [sum(float(s.values[i]) for s in series) for i in range(n)]
    if not n or not series or max(totals, default=0) <= 0:
        return _empty(title, empty_text, width, height)
    colours = _colours(series)
    summary = "; ".join(f"{s.name}: {_num(sum(float(v) for v in s.values))}" for s in series)
    c = _Canvas(title, summary, width, height, n, [(s.name, col) for s, col in zip(series, colours)])
    ticks = nice_ticks(max(totals))
    top = ticks[-1]
    c.grid(ticks)
    for i, lab in enumerate(labels):
        x0, band = c.x_band(i)
        w = max(band * 0.7, 1.0)
        x = x0 + (band - w) / 2
        base = 0.0
        for s, colour in zip(series, colours):
            v = float(s.values[i])
            if v <= 0:
                continue
            y1, y0 = c.y(base + v, top), c.y(base, top)
            c.add(f'<rect x="{x:.1f}" y="{y1:.1f}" width="{w:.1f}" height="{max(y0 - y1, 0.5):.1f}" '
                  f'fill="{escape(colour)}"><title>{escape(lab)} · {escape(s.name)}: {escape(_num(v))}</title></rect>')
            base += v
    c.x_labels(labels, centred=True)
    c.legend()
    return c.render()


def bars_with_rate(labels: Sequence[str], attempts: Sequence[int], failures: Sequence[int], *, title: str,
                   attempts_name: str = "Attempts", failures_name: str = "Failures", rate_name: str = "Failure rate",
                   threshold: float | None = None, threshold_name: str = "Threshold", empty_text: str = "No data",
                   min_attempts: int = 0, not_judged_name: str = "not judged yet",
                   width: int = 720, height: int = 260) -> Markup:
    """Attempts per label (failed part red) on the left axis, the failure rate (0..1) on the right.

    The rate is cumulative (failures so far / attempts so far), the figure the halt rule
    judges; while fewer than ``min_attempts`` attempts were made, its points are hollow and
    grey (``not_judged_name``), since the rule does not halt on them yet.
    """
    n = len(labels)
    if not n or max(attempts, default=0) <= 0:
        return _empty(title, empty_text, width, height)
    rates: list[float | None] = []
    judged: list[bool] = []
    cum_a = cum_f = 0
    for a, f in zip(attempts, failures):
        cum_a, cum_f = cum_a + a, cum_f + f
        rates.append(cum_f / cum_a if cum_a and a else None)
        judged.append(cum_a >= min_attempts)
    legend = [(attempts_name, ATTEMPT_COLOUR), (failures_name, FAIL_COLOUR), (rate_name, "#7f1d1d")]
    if threshold is not None:
        legend.append((threshold_name, "#b45309"))
    total_a, total_f = sum(attempts), sum(failures)
    summary = f"{attempts_name}: {total_a}; {failures_name}: {total_f}; {rate_name}: " \
              f"{_fmt_tick(total_f / total_a if total_a else 0, True)}"
    c = _Canvas(title, summary, width, height, n, legend, right_axis=True)
    ticks = nice_ticks(max(attempts), integer=True)
    top = ticks[-1]
    c.grid(ticks)
    rate_top_value = max([r for r in rates if r is not None] + [threshold or 0.0, 0.01])
    rate_ticks = nice_ticks(min(rate_top_value * 1.15, 1.0))
    rate_top = rate_ticks[-1]
    c.grid(rate_ticks, percent=True, right=True)
    for i, lab in enumerate(labels):
        a, f = attempts[i], failures[i]
        if a <= 0:
            continue
        x0, band = c.x_band(i)
        w = max(band * 0.6, 1.0)
        x = x0 + (band - w) / 2
        ya, yb = c.y(a, top), c.y(0, top)
        c.add(f'<rect x="{x:.1f}" y="{ya:.1f}" width="{w:.1f}" height="{max(yb - ya, 0.5):.1f}" '
              f'fill="{ATTEMPT_COLOUR}"><title>{escape(lab)} · {escape(attempts_name)}: {a}</title></rect>')
        if f > 0:
            yf = c.y(f, top)
            c.add(f'<rect x="{x:.1f}" y="{yf:.1f}" width="{w:.1f}" height="{max(yb - yf, 0.5):.1f}" '
                  f'fill="{FAIL_COLOUR}" class="fail"><title>{escape(lab)} · {escape(failures_name)}: {f}</title>'
                  f'</rect>')
    if threshold is not None:
        yt = c.y(threshold, rate_top)
        c.add(f'<line x1="{c.left}" x2="{c.left + c.plot_w}" y1="{yt:.1f}" y2="{yt:.1f}" stroke="#b45309" '
              f'stroke-width="2" stroke-dasharray="6 4"><title>{escape(threshold_name)}: '
              f'{escape(_fmt_tick(threshold, True))}</title></line>')
    points = []
    for i, r in enumerate(rates):
        if r is None:
            continue
        x0, band = c.x_band(i)
        points.append((x0 + band / 2, c.y(r, rate_top), r, labels[i], judged[i]))
    if points:
        if len(points) > 1:
            d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y, _, _, _ in points)
            c.add(f'<path d="{d}" fill="none" stroke="#7f1d1d" stroke-width="2" class="rate"/>')
        for x, y, r, lab, ok in points:
            note = "" if ok else f" ({escape(not_judged_name)})"
            attrs = 'fill="#7f1d1d"' if ok else 'fill="#ffffff" stroke="#475569" stroke-width="1.5" class="not-judged"'
            c.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" {attrs}><title>{escape(lab)} · '
                  f'{escape(rate_name)}: {escape(_fmt_tick(r, True))}{note}</title></circle>')
    c.x_labels(labels, centred=True)
    c.legend()
    return c.render()
