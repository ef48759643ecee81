"""The JSON API's plumbing: route declaration, request parsing, errors, OpenAPI.

Each domain's ``api.py`` declares its routes with :func:`endpoint`, naming the roles
allowed, the pydantic schema of the body and query, and the response schema. The same
declarations validate requests and generate ``/api/openapi.json``. Every error under
``/api`` has one shape: ``{"error": {"code", "message", "field"}}``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

import pydantic
from flask import Blueprint, Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .errors import PayloadTooLargeError, ReleaseServerError, ValidationError

log = logging.getLogger(__name__)

api_bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")

STAFF = frozenset({"admin", "publisher", "support"})
PUBLISHERS = frozenset({"admin", "publisher"})
SUPPORT = frozenset({"admin", "support"})
ADMIN = frozenset({"admin"})


@dataclass
class RouteSpec:
    rule: str
    methods: tuple[str, ...]
    roles: frozenset[str]
    summary: str
    tag: str
    body: type[pydantic.BaseModel] | None = None
    query: type[pydantic.BaseModel] | None = None
    response: type[pydantic.BaseModel] | None = None
    multipart: dict[str, Any] | None = None
    status: int = 200
    binary: bool = False
    extra_responses: dict[int, str] = field(default_factory=dict)


ROUTES: list[RouteSpec] = []
MAX_JSON_BODY = 1024 * 1024


def field_of(err: pydantic.ValidationError) -> tuple[str, str]:
    """The first offending field (dotted path) and its message."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__")
    msg = first.get("msg", "invalid value")
    return loc or None, msg  # type: ignore[return-value]


def parse_model(model: type[pydantic.BaseModel], data: Any, *, prefix: str = "") -> Any:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        loc, msg = field_of(e)
        name = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or None)
        raise ValidationError(f"{name}: {msg}" if name else msg, field=name) from None


def parse_json_body(model: type[pydantic.BaseModel]) -> Any:
    if not request.is_json:
        raise ReleaseServerError("expected a JSON body (Content-Type: application/json)",
                                 status=415, code="unsupported_media_type", field="body")
    length = request.content_length
    if length is not None and length > MAX_JSON_BODY:
        raise PayloadTooLargeError(f"JSON body larger than {MAX_JSON_BODY} bytes", field="body")
    if length is not None:
        # a declared length within bounds: read the input directly (the common case, and the hot path)
        raw = request.environ["wsgi.input"].read(length)
    else:
        raw = request.stream.read(MAX_JSON_BODY + 1)
        if len(raw) > MAX_JSON_BODY:
            raise PayloadTooLargeError(f"JSON body larger than {MAX_JSON_BODY} bytes", field="body")
    try:
        return model.model_validate_json(raw or b"null")
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        if first.get("type") in ("json_invalid", "model_type"):
            raise ValidationError("the body is not a valid JSON object", field="body") from None
        loc, msg = field_of(e)
        raise ValidationError(f"{loc}: {msg}" if loc else msg, field=loc) from None


def parse_query(model: type[pydantic.BaseModel]) -> Any:
    data: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        data[key] = values if len(values) > 1 else values[0]
    return parse_model(model, data)


def endpoint(rule: str, *, methods: Iterable[str] = ("GET",), roles: Iterable[str], summary: str, tag: str,
             body: type[pydantic.BaseModel] | None = None, query: type[pydantic.BaseModel] | None = None,
             response: type[pydantic.BaseModel] | None = None, multipart: dict[str, Any] | None = None,
             status: int = 200, binary: bool = False, readonly: bool = False, hot_path: bool = False) -> Callable:
    """Declare an API route: who may call it and what it accepts and returns.

    The view receives ``principal`` plus ``body``/``query`` (parsed models) when declared,
    and returns a pydantic model, a dict, or a Flask response. ``readonly`` routes use a
    read transaction even for POST (SQLite: no write lock); they open their own write
    session when they must write. ``hot_path`` routes are the fleet's polls: their
    successful answers are logged at debug (see :mod:`release_server.logs`).
    """
    spec = RouteSpec(rule, tuple(methods), frozenset(roles), summary, tag, body, query, response, multipart,
                     status, binary)

    def deco(fn: Callable) -> Callable:
        from .accounts.auth import authenticate

        @wraps(fn)
        def view(**kwargs: Any) -> Any:
            if readonly:
                g._db_write = False
            kwargs["principal"] = authenticate(spec.roles)
            if spec.query is not None:
                kwargs["query"] = parse_query(spec.query)
            if spec.body is not None:
                kwargs["body"] = parse_json_body(spec.body)
            result = fn(**kwargs)
            if isinstance(result, Response):
                return result
            if isinstance(result, pydantic.BaseModel):
                result = result.model_dump(mode="json")
            return jsonify(result), spec.status

        ROUTES.append(spec)
        if hot_path:
            from .logs import hot_path as declare_hot_path

            declare_hot_path(f"{api_bp.name}.{fn.__name__}")
        api_bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=list(spec.methods))
        return view

    return deco


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    resp = jsonify({"error": {"code": code, "message": message, "field": field}})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
              429: "rate_limited"}


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def init_app(app: Flask) -> None:
    """Register the API blueprint, its JSON error handlers and the OpenAPI document."""
    # Domain route modules register themselves on import.
    from .accounts import api as _accounts_api  # noqa: F401
    from .deltas import api as _deltas_api  # noqa: F401
    from .fleet import api as _fleet_api  # noqa: F401
    from .releases import api as _releases_api  # noqa: F401
    from .rollouts import api as _rollouts_api  # noqa: F401
    from .signing import api as _signing_api  # noqa: F401
    from .support import api as _support_api  # noqa: F401

    app.register_blueprint(api_bp)

    @app.get("/api/openapi.json")
    def openapi() -> Response:
        return jsonify(build_openapi(app))

    @app.errorhandler(ReleaseServerError)
    def _domain_error(e: ReleaseServerError) -> Any:
        from .db import db

        db.rollback()
        return error_response(e.status, e.code, e.message, e.field)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Any:
        if not _wants_json():
            page = app.extensions.get("html_error_page")  # the web faces' styled, translated pages
            shown = page(e.code or 500) if page is not None and (e.code or 500) >= 400 else None
            return shown if shown is not None else e
        status = e.code or 500
        headers = {}
        valid = getattr(e, "valid_methods", None)
        if status == 405 and valid:
            headers["Allow"] = ", ".join(valid)
        message = e.description or e.name
        fld = "artifact" if status == 413 else None
        if status == 413:
            message = f"request body larger than the limit of {app.config['MAX_CONTENT_LENGTH']} bytes"
        return error_response(status, HTTP_CODES.get(status, "http_error"), message, fld, headers)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Any:
        from .db import db

        db.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            return error_response(500, "internal_error", "internal server error")
        page = app.extensions.get("html_error_page")
        if page is not None:
            try:
                shown = page(500)
                if shown is not None:
                    return shown
            except Exception:  # noqa: BLE001 - the error page itself failed: plain text then
                log.exception("the error page failed")
        return Response("internal server error", status=500, mimetype="text/plain")


def _flask_rule_to_openapi(rule: str) -> tuple[str, list[dict]]:
    import re

    params = []

    def repl(m: re.Match) -> str:
        conv, name = (m.group(1) or "string"), m.group(2)
        schema = {"type": "integer"} if conv == "int" else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    path = re.sub(r"<(?:(\w+):)?(\w+)>", repl, rule)
    return path, params


def build_openapi(app: Flask) -> dict[str, Any]:
    """OpenAPI 3.1 document generated from the declared routes and their schemas."""
    components: dict[str, Any] = {}

    def ref(model: type[pydantic.BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    paths: dict[str, Any] = {}
    for spec in ROUTES:
        path, params = _flask_rule_to_openapi(api_bp.url_prefix + spec.rule)
        for method in spec.methods:
            op: dict[str, Any] = {
                "summary": spec.summary, "tags": [spec.tag], "operationId": f"{method.lower()}_{path}",
                "parameters": list(params),
                "security": [{"bearerAuth": []}],
                "x-roles": sorted(spec.roles),
                "responses": {},
            }
            if spec.query is not None:
                qs = spec.query.model_json_schema()
                for name, prop in qs.get("properties", {}).items():
                    op["parameters"].append({"name": name, "in": "query",
                                             "required": name in qs.get("required", []), "schema": prop})
            if spec.body is not None:
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(spec.body)}}}
            if spec.multipart is not None:
                props = {}
                for name, info in spec.multipart.items():
                    if isinstance(info, type) and issubclass(info, pydantic.BaseModel):
                        props[name] = {**ref(info), "description": "JSON document"}
                    else:
                        props[name] = info
                op["requestBody"] = {"required": True, "content": {"multipart/form-data": {
                    "schema": {"type": "object", "properties": props, "required": list(spec.multipart)}}}}
            ok: dict[str, Any] = {"description": "OK"}
            if spec.response is not None:
                ok["content"] = {"application/json": {"schema": ref(spec.response)}}
            elif spec.binary:
                ok["content"] = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
            op["responses"][str(spec.status)] = ok
            for code, desc in ((400, "Invalid input"), (401, "Not authenticated"), (403, "Role not allowed"),
                               (404, "Not found")):
                op["responses"][str(code)] = {"description": desc, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}}
            paths.setdefault(path, {})[method.lower()] = op
    components["Error"] = {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message", "field"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "field": {"type": ["string", "null"]}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Release server API", "version": "1"},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer"}}},
    }
