"""The baseline for report_ingest.py: Flask + SQLAlchemy, one INSERT per report, one commit per request.

The database comes from ``BARE_DATABASE_URL``; the table is created at start.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone

from flask import Flask, jsonify, request
from sqlalchemy import JSON, Column, DateTime, Float, MetaData, String, Table, Text, create_engine, event, insert

URL = os.environ["BARE_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://")
if URL.startswith("sqlite"):  # the same SQLite settings as the release server's (WAL, NORMAL sync)
    engine = create_engine(URL, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()
else:
    engine = create_engine(URL)
meta = MetaData()
reports = Table(
    "bare_reports", meta,
    Column("id", String(36), primary_key=True), Column("installation", String(200)),
    Column("component", String(64)), Column("from_version", String(64)), Column("to_version", String(64)),
    Column("outcome", String(20)), Column("stage", String(40)), Column("error_code", String(80)),
    Column("error_message", Text), Column("duration_seconds", Float), Column("log_tail", Text),
    Column("details", JSON), Column("received_at", DateTime(timezone=True)))
try:
    meta.create_all(engine)
except Exception:  # noqa: BLE001 - another worker created it at the same moment
    pass
app = Flask(__name__)


@app.post("/api/v1/reports")
def post_reports():  # noqa: ANN201
    body = request.get_json()
    who = request.headers.get("Authorization", "")[-20:]
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        for r in body["reports"]:
            conn.execute(insert(reports).values(
                id=r["id"], installation=who, component=r["component"], from_version=r.get("from_version"),
                to_version=r["to_version"], outcome=r["outcome"], stage=r.get("stage"), error_code=r.get("error_code"),
                error_message=r.get("error_message"), duration_seconds=r.get("duration_seconds"),
                log_tail=r.get("log_tail", ""), details=r.get("details", {}), received_at=now))
    return jsonify({"accepted": [r["id"] for r in body["reports"]], "duplicates": []})


@app.get("/healthz")
def healthz():  # noqa: ANN201
    return {"status": "ok"}
