"""The baseline for check_throughput.py: a bare Flask route returning a constant JSON body."""
from __future__ import annotations

from flask import Flask, jsonify

app = Flask(__name__)
BODY = {"offers": [], "poll_interval": 3600, "maintenance_window": None}


@app.post("/api/v1/updates/check")
def check():  # noqa: ANN201
    return jsonify(BODY)


@app.get("/healthz")
def healthz():  # noqa: ANN201
    return {"status": "ok"}
