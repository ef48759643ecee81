"""One JSON error shape under /api for every failure, and the OpenAPI document."""
from __future__ import annotations

import io

from factories import create_component


def assert_error_shape(resp, status, code=None):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    err = resp.json["error"]
    assert set(err) == {"code", "message", "field"} and err["message"]
    if code:
        assert err["code"] == code


def test_404_405_415_413_are_json(client, auth, app):
    h = auth.headers("admin")
    assert_error_shape(client.get("/api/v1/nothing-here", headers=h), 404, "not_found")
    assert_error_shape(client.get("/api/elsewhere"), 404, "not_found")
    r = client.delete("/api/v1/components", headers=h)
    assert_error_shape(r, 405, "method_not_allowed")
    assert "GET" in r.headers["Allow"]
    assert_error_shape(client.post("/api/v1/components", data="name=x", headers=h,
                                   content_type="application/x-www-form-urlencoded"), 415)
    r = client.post("/api/v1/components", data="{not json", headers=h, content_type="application/json")
    assert_error_shape(r, 400)
    assert r.json["error"]["field"] == "body"
    app.config["MAX_CONTENT_LENGTH"] = 100
    create_component(client, h, "server")
    r = client.post("/api/v1/components/server/releases", headers=h, content_type="multipart/form-data",
                    data={"metadata": "{}", "artifact": (io.BytesIO(b"x" * 1000), "a.tar.gz")})
    assert_error_shape(r, 413, "too_large")


def test_validation_errors_name_the_field(client, auth):
    h = auth.headers("admin")
    r = client.post("/api/v1/components", json={"name": "Bad Name!"}, headers=h)
    assert_error_shape(r, 400)
    assert r.json["error"]["field"] == "name"
    r = client.post("/api/v1/components", json={}, headers=h)
    assert r.json["error"]["field"] == "name"
    r = client.post("/api/v1/users", json={"username": "x1", "password": "short", "role": "admin"}, headers=h)
    assert r.json["error"]["field"] == "password"
    r = client.post("/api/v1/users", json={"username": "x1", "password": "long enough!", "role": "boss"}, headers=h)
    assert r.json["error"]["field"] == "role"
    r = client.get("/api/v1/components/server/releases/1.0", headers=h)
    assert_error_shape(r, 404, "unknown_component")
    assert r.json["error"]["field"] == "component"
    create_component(client, h, "server")
    assert client.post("/api/v1/components", json={"name": "server"}, headers=h).status_code == 409
    r = client.get("/api/v1/components/server/releases/not..a..version", headers=h)
    assert_error_shape(r, 400)
    assert r.json["error"]["field"] == "version"


def test_non_api_paths_keep_html_errors(client):
    r = client.get("/no-such-page")
    assert r.status_code == 404 and r.mimetype != "application/json"


def test_openapi_is_generated_from_the_schemas(client):
    doc = client.get("/api/openapi.json").json
    assert doc["openapi"].startswith("3.")
    publish = doc["paths"]["/api/v1/components/{component}/releases"]["post"]
    mp = publish["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(mp["required"]) == {"metadata", "artifact"}
    meta = doc["components"]["schemas"]["PublishMetadata"]
    assert {"version", "channels", "changelog", "critical", "min_from_version", "requires"} <= set(meta["properties"])
    assert meta["additionalProperties"] is False
    comp = doc["paths"]["/api/v1/components"]["post"]
    assert comp["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/CreateComponent")
    assert comp["x-roles"] == ["admin", "publisher"]
    params = {p["name"] for p in doc["paths"]["/api/v1/components/{component}/releases"]["get"]["parameters"]}
    assert {"component", "channel", "page", "per_page"} <= params
    # every referenced schema exists
    import json
    import re

    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc))):
        assert ref in doc["components"]["schemas"], ref


def test_json_bodies_are_bounded(client, auth):
    h = auth.headers("admin")
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    r = client.post("/api/v1/components", data=big, headers=h, content_type="application/json")
    assert r.status_code == 413 and r.json["error"]["field"] == "body"


def test_ids_beyond_a_database_integer_are_404(client, auth):
    h = auth.headers("admin")
    for path in ("/api/v1/pins/348861681106791868538934001664", "/api/v1/rollouts/2147483648"):
        r = client.delete(path, headers=h) if "pins" in path else client.get(path, headers=h)
        assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
