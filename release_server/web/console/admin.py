"""The audit log (administrators)."""
from __future__ import annotations

from typing import Any

from flask import render_template, request
from sqlalchemy import select

from ...accounts.models import AuditEvent
from ...accounts.services import list_audit
from ...db import db
from ..security import staff_required
from . import ADMIN, bp

PER_PAGE = 50


@bp.get("/audit")
@staff_required(*ADMIN)
def audit_log() -> Any:
    action = (request.args.get("action") or "").strip()[:80] or None
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    rows = list_audit(db.session, limit=PER_PAGE + 1, offset=(page - 1) * PER_PAGE, action=action)
    actions = sorted(db.session.scalars(select(AuditEvent.action).distinct()))
    return render_template("console/audit.html", rows=rows[:PER_PAGE], more=len(rows) > PER_PAGE, page=page,
                           action=action or "", actions=actions)
