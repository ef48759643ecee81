"""The dashboard: the fleet, the rollouts and the support queue at a glance."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from flask import render_template, request
from flask_babel import format_date, gettext as _
from packaging.version import Version

from ...db import db
from ...releases import services as releases
from ...rollouts import figures, services as rollouts
from .. import charts, queries
from ..i18n import KIND_LABELS
from . import ALL, bp
from ..security import staff_required

CHART_DAYS = 30


def adoption_chart(component: str, days: int = CHART_DAYS, live: dict[str, int] | None = None) -> Any:
    """The chart of the counted days and today; ``live``: today's counts, if already read."""
    rows = [r for r in figures.adoption(db.session, component, days, live=live) if r.counted]
    versions = sorted({v for r in rows for v in r.versions}, key=Version)
    labels = [format_date(r.day, "d MMM") for r in rows]
    series = [charts.Series(v, [r.versions.get(v, 0) for r in rows]) for v in versions]
    return charts.stacked_area(labels, series, title=_("Installations by version of %(component)s",
                                                       component=component), empty_text=_("No installations yet"),
                                 width=960, height=280), days - len(rows)


def tickets_chart(days: int = CHART_DAYS) -> Any:
    axis, per_kind = queries.tickets_per_day(db.session, days)
    labels = [format_date(d, "d MMM") for d in axis]
    series = [charts.Series(str(KIND_LABELS[k]), per_kind[k]) for k in per_kind]
    return charts.stacked_bars(labels, series, title=_("Tickets opened per day by kind"),
                               empty_text=_("No tickets in this period"), width=560, height=250)


@bp.get("/")
@staff_required(*ALL)
def dashboard() -> Any:
    session = db.session
    rows, stale, total = figures.versions_in_use(session)
    by_component: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for comp, version, n in rows:
        by_component[comp].append((version, n))
    for comp in by_component:
        by_component[comp].sort(key=lambda r: Version(r[0]), reverse=True)
    components = [c.name for c in releases.list_components(session)]
    # by default the component whose fleet is most mixed (the most versions in use)
    busiest = max(by_component, key=lambda c: (len(by_component[c]), c == "server"), default=None)
    chosen = request.args.get("component") or busiest or (components[0] if components else None)
    if chosen not in components:
        chosen = components[0] if components else None
    adoption_svg, uncounted = None, 0
    if chosen:  # today's counts from the aggregate above: the chart reads only the days counted before
        adoption_svg, uncounted = adoption_chart(chosen, live={v: n for c, v, n in rows if c == chosen})
    active = [r for r in rollouts.list_rollouts(session) if r.state in ("running", "paused", "halted", "draft")]
    active.sort(key=lambda r: ({"halted": 0, "running": 1, "paused": 2, "draft": 3}[r.state], -r.id))
    return render_template(
        "console/dashboard.html", by_component=dict(sorted(by_component.items())), stale=stale, total=total,
        rollouts=active[:12], rollout_figures={r.id: rollouts.figures(r) for r in active},
        tickets=queries.open_tickets_by_kind_status(session), components=components, chosen=chosen,
        adoption_svg=adoption_svg, adoption_uncounted=uncounted, tickets_svg=tickets_chart(),
        **_transfer(session))


def _transfer(session: Any) -> dict[str, Any]:
    """Bytes saved by delta patches across the fleet, and the releases that saved the most."""
    from ...deltas.services import transfer_figures

    rows, total = transfer_figures(session)
    best = sorted((r for r in rows if r.bytes_saved), key=lambda r: r.bytes_saved, reverse=True)[:5]
    return {"transfer": total, "transfer_rows": best}
