"""The baseline for tuf_timestamp.py: a bare Flask route returning timestamp.json's bytes from memory."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from flask import Flask, Response

app = Flask(__name__)
DATA = Path(os.environ["BARE_TUF_TIMESTAMP"]).read_bytes()
ETAG = hashlib.sha256(DATA).hexdigest()


@app.get("/tuf/metadata/timestamp.json")
def timestamp():  # noqa: ANN201
    resp = Response(DATA, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["ETag"] = f'"{ETAG}"'
    return resp


@app.get("/healthz")
def healthz():  # noqa: ANN201
    return {"status": "ok"}
