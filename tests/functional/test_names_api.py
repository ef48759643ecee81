"""Names, file names, channels and tags sent over the API: a line break, NUL or a Unicode line
separator anywhere is a 400 naming the field, and nothing is stored."""
from __future__ import annotations

import io
import json

import pytest
from factories import create_component, enroll, make_tarball, publish

BAD = ["\n", "\r", "\x00", "\u2028", "\u2029", "\x85"]


@pytest.mark.parametrize("bad", BAD, ids=[repr(b) for b in BAD])
def test_api_name_fields_refuse_line_breaks_nul_and_separators(client, auth, bad):
    admin = auth.headers("admin")
    pub = auth.headers("publisher")
    r = create_component(client, pub, "evil" + bad)
    assert r.status_code == 400 and r.json["error"]["field"] == "name", r.json
    assert [c["name"] for c in client.get("/api/v1/components", headers=pub).json["items"]] == []
    assert create_component(client, pub, "server").status_code == 201
    # artifact file name: from the metadata and from the uploaded part
    r = publish(client, pub, "server", "1.0", filename="a.tar.gz" + bad)
    assert r.status_code == 400 and r.json["error"]["field"] in ("filename", "artifact"), r.json
    data = {"metadata": json.dumps({"version": "1.0"}),
            "artifact": (io.BytesIO(make_tarball({"VERSION": "1"})), "a.tar.gz" + bad)}
    r = client.post("/api/v1/components/server/releases", data=data, headers=pub, content_type="multipart/form-data")
    assert r.status_code == 400 and r.json["error"]["field"] == "artifact", r.json
    r = publish(client, pub, "server", "1.0", channels=["stable" + bad])
    assert r.status_code == 400 and r.json["error"]["field"].startswith("channels"), r.json
    assert client.get("/api/v1/components/server/releases", headers=pub).json["items"] == []
    # customers, enrollment channel and tags
    r = client.post("/api/v1/customers", json={"name": "Ac" + bad + "me"}, headers=admin)
    assert r.status_code == 400 and r.json["error"]["field"] == "name", r.json
    assert client.post("/api/v1/customers", json={"name": "Acme"}, headers=admin).status_code == 201
    token = client.post("/api/v1/customers/Acme/enrollment-tokens", json={}, headers=admin).json["token"]
    for field, value in (("channel", "stable" + bad), ("tags", ["eu" + bad])):
        r = client.post("/api/v1/enroll", json={"enrollment_token": token, "name": "n", field: value})
        assert r.status_code == 400 and r.json["error"]["field"].startswith(field), r.json
    inst = enroll(client, admin, "Acme")
    assert inst["installation_id"]
    # numbers and metadata names in paths
    assert client.get(f"/api/v1/tickets/OTK-1{bad}", headers=admin).status_code == 404
    assert client.get(f"/tuf/metadata/1.root.json{bad}").status_code == 404
