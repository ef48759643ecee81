"""HTTP client of the release server's agent API: enroll, check, reports.

Thin and typed: each call sends one request and turns the answer into plain
dataclasses, or raises a ``ServerError`` subclass:

* ``ServerUnavailableError``: the server could not be reached or answered 5xx
  (transient; retry later). ``ServerBusyError`` (429/503) carries the delay
  the server asked for in ``Retry-After``.
* ``AuthRejectedError``: 401/403, the installation token is not accepted.
* ``ApiError``: any other 4xx, with the server's error code, message and field.
* ``ProtocolError``: the answer is not what the API promises.

Nothing the check endpoint says is trusted for installing: offers are
proposals which ``trust.py`` verifies against signed TUF metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import requests

from client_agent.backoff import parse_retry_after
from client_agent.errors import AgentError

log = logging.getLogger(__name__)


class ServerError(AgentError):
    """Root of the errors talking to the release server."""


class ServerUnavailableError(ServerError):
    """The server is unreachable or failed (network error, timeout, 5xx)."""

    def __init__(self, url: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(f"server unavailable ({url}): {reason}")
        self.url = url
        self.reason = reason
        self.retry_after = retry_after


class ServerBusyError(ServerUnavailableError):
    """The server asked us to come back later (429 or 503)."""

    def __init__(self, url: str, status_code: int, retry_after: float | None) -> None:
        wait = f"; retry after {retry_after:g}s" if retry_after is not None else ""
        super().__init__(url, f"HTTP {status_code}{wait}", retry_after)
        self.status_code = status_code


class AuthRejectedError(ServerError):
    """The server did not accept our credentials (revoked or unknown token)."""

    def __init__(self, url: str, status_code: int, message: str) -> None:
        super().__init__(f"the server rejected our credentials (HTTP {status_code}): {message}")
        self.url = url
        self.status_code = status_code


class ApiError(ServerError):
    """The server refused the request (4xx) with a JSON error body."""

    def __init__(self, url: str, status_code: int, code: str, message: str, field: str | None) -> None:
        where = f" (field {field!r})" if field else ""
        super().__init__(f"the server refused the request: {message}{where} [{code}, HTTP {status_code}]")
        self.url = url
        self.status_code = status_code
        self.code = code
        self.server_message = message
        self.field = field


class ProtocolError(ServerError):
    """The server's answer does not have the promised shape."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"unexpected answer from {url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class Offer:
    """One proposal of the check endpoint (to be verified with TUF before use)."""

    component: str
    version: str
    from_version: str | None
    target_path: str
    sha256: str
    length: int
    critical: bool
    downgrade: bool
    changelog: str

    @classmethod
    def parse(cls, data: Any, url: str) -> Offer:
        try:
            offer = cls(component=str(data["component"]), version=str(data["version"]),
                        from_version=None if data.get("from_version") is None else str(data["from_version"]),
                        target_path=str(data["target_path"]), sha256=str(data.get("sha256", "")),
                        length=int(data.get("length", 0)), critical=bool(data.get("critical", False)),
                        downgrade=bool(data.get("downgrade", False)), changelog=str(data.get("changelog") or ""))
        except (TypeError, KeyError, ValueError) as exc:
            raise ProtocolError(url, f"malformed offer: {exc!r}") from exc
        return offer


@dataclass(frozen=True)
class CheckResult:
    offers: list[Offer]
    poll_interval: float | None
    maintenance_window: str | None


class ApiClient:
    """Calls the agent API of one server; ``token`` is the installation's own token."""

    def __init__(self, server_url: str, token: str | None = None, *, timeout: float = 30.0,
                 user_agent: str = "client-agent", session: requests.Session | None = None) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = user_agent

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------ calls

    def enroll(self, body: Mapping[str, Any]) -> dict[str, Any]:
        data = self._post("/api/v1/enroll", body, auth=False)
        for key in ("installation_id", "token"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ProtocolError(self.server_url, f"enrollment answer has no {key!r}")
        return data

    def check(self, installed: Mapping[str, str], *, components: list[str] | None = None,
              agent_version: str | None = None, state: str | None = None) -> CheckResult:
        body: dict[str, Any] = {"installed": dict(installed)}
        if components:
            body["components"] = list(components)
        if agent_version:
            body["agent_version"] = agent_version
        if state:
            body["state"] = state
        url = self.server_url + "/api/v1/updates/check"
        data = self._post("/api/v1/updates/check", body)
        raw_offers = data.get("offers")
        if not isinstance(raw_offers, list):
            raise ProtocolError(url, "no 'offers' list")
        poll = data.get("poll_interval")
        window = data.get("maintenance_window")
        return CheckResult(offers=[Offer.parse(o, url) for o in raw_offers],
                           poll_interval=float(poll) if isinstance(poll, (int, float)) and poll > 0 else None,
                           maintenance_window=window if isinstance(window, str) and window else None)

    def send_reports(self, reports: list[Mapping[str, Any]]) -> dict[str, list[str]]:
        data = self._post("/api/v1/reports", {"reports": list(reports)})
        return {"accepted": list(data.get("accepted") or []), "duplicates": list(data.get("duplicates") or [])}

    def create_ticket(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Open a support request for this installation's customer; returns the ticket."""
        data = self._post("/api/v1/tickets", body)
        if not isinstance(data.get("number"), str):
            raise ProtocolError(self.server_url, "ticket answer has no 'number'")
        return data

    def upload_attachments(self, number: str, files: list[tuple[str, Any, str]]) -> dict[str, Any]:
        """Attach ``(filename, binary file object, content type)`` items to ticket ``number``."""
        url = f"{self.server_url}/api/v1/tickets/{number}/attachments"
        if not self.token:
            raise AuthRejectedError(url, 401, "no installation token")
        try:
            resp = self.session.post(url, files=[("file", f) for f in files], timeout=max(self.timeout, 300),
                                     headers={"Accept": "application/json", "Authorization": f"Bearer {self.token}"})
        except requests.RequestException as exc:
            raise ServerUnavailableError(url, _describe(exc)) from exc
        with resp:
            return self._answer(url, resp)

    # ------------------------------------------------------------ plumbing

    def _post(self, path: str, body: Mapping[str, Any], *, auth: bool = True) -> dict[str, Any]:
        url = self.server_url + path
        headers = {"Accept": "application/json"}
        if auth:
            if not self.token:
                raise AuthRejectedError(url, 401, "no installation token")
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            resp = self.session.post(url, json=dict(body), headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ServerUnavailableError(url, _describe(exc)) from exc
        with resp:
            return self._answer(url, resp)

    @staticmethod
    def _answer(url: str, resp: requests.Response) -> dict[str, Any]:
        status = resp.status_code
        if status in (429, 503):
            raise ServerBusyError(url, status, parse_retry_after(resp.headers.get("Retry-After")))
        if status >= 500:
            raise ServerUnavailableError(url, f"HTTP {status}", parse_retry_after(resp.headers.get("Retry-After")))
        try:
            data = resp.json()
        except ValueError:
            data = None
        if status >= 400:
            err = data.get("error") if isinstance(data, dict) else None
            err = err if isinstance(err, dict) else {}
            message = str(err.get("message") or resp.reason or "")
            if status in (401, 403):
                raise AuthRejectedError(url, status, message)
            raise ApiError(url, status, str(err.get("code") or "http_error"), message,
                           err.get("field") if isinstance(err.get("field"), str) else None)
        if not isinstance(data, dict):
            raise ProtocolError(url, f"HTTP {status} without a JSON object")
        return data


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return exc.__class__.__name__
