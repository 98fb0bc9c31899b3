"""A practice's EHR FHIR R4 API: reads, versioned writes and searches, retried, authenticated.

Why this shape: the write-back must be idempotent against a server that other people
write to (staff change Task status in the EHR). So every write is a ``PUT`` to a
client-assigned id (update-as-create: writing it again updates the same resource) and an
update of an existing resource carries ``If-Match`` with the version just read, so a
change made meanwhile is never overwritten blindly: the server answers 409/412 and the
caller reads again (:class:`VersionConflict`).

Transient failures (connection errors, timeouts, 429, 5xx) are retried with exponential
backoff and jitter (tenacity); anything else is a :class:`FhirError` with the server's
status and diagnostics (no resource bodies: they hold PHI).

Authentication is per practice (:class:`~practiceflow.processors.ehr.config.EhrFhirTarget`):
SMART Backend Services — a ``client_credentials`` token request authenticated by a
``private_key_jwt`` client assertion (RS384/ES384, 5-minute expiry, unique ``jti``) — or
``none`` for the local FHIR server (tests and the sample day run with auth off).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from practiceflow.processors.ehr.config import EhrFhirTarget

FHIR_JSON = "application/fhir+json"


class FhirError(RuntimeError):
    """The server refused a request for a reason retrying does not fix (4xx other than 409/412/429)."""

    def __init__(self, status: int, what: str, diagnostics: str = "") -> None:
        super().__init__(f"{what}: HTTP {status}{': ' + diagnostics if diagnostics else ''}")
        self.status = status


class VersionConflict(FhirError):
    """``If-Match`` named a version that is no longer current (409/412): read again, then decide."""


class _Transient(Exception):
    def __init__(self, status: int, what: str) -> None:
        super().__init__(f"{what}: HTTP {status} (retried)")
        self.status = status


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (_Transient, httpx.TransportError))


def _diagnostics(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    issues = body.get("issue") or [] if isinstance(body, dict) else []
    return "; ".join(str(i.get("diagnostics") or i.get("code") or "") for i in issues)[:300]


class SmartBackendAuth:
    """Access tokens by SMART Backend Services (client_credentials + private_key_jwt), cached
    until a minute before they expire."""

    def __init__(self, target: EhrFhirTarget, http: httpx.Client) -> None:
        self.target = target
        self.http = http
        self._token: str | None = None
        self._until = 0.0

    def assertion(self, now: float | None = None) -> str:
        """The signed client assertion (RFC 7523) the token request carries."""
        from joserfc import jwt
        from joserfc.jwk import ECKey, RSAKey

        t = self.target
        assert t.private_key_file is not None and t.client_id and t.token_url  # noqa: S101 - validated in settings
        pem = t.private_key_file.read_bytes()
        key = RSAKey.import_key(pem) if t.algorithm == "RS384" else ECKey.import_key(pem)
        issued = int(now if now is not None else time.time())
        header: dict[str, Any] = {"alg": t.algorithm, "typ": "JWT"}
        if t.key_id:
            header["kid"] = t.key_id
        claims = {
            "iss": t.client_id,
            "sub": t.client_id,
            "aud": t.token_url,
            "exp": issued + 300,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(header, claims, key, algorithms=[t.algorithm])

    def token(self, refresh: bool = False) -> str:
        if self._token is not None and not refresh and time.monotonic() < self._until:
            return self._token
        t = self.target
        resp = self.http.post(
            str(t.token_url),
            data={
                "grant_type": "client_credentials",
                "scope": t.scope,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": self.assertion(),
            },
            headers={"Accept": "application/json"},
        )
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _Transient(resp.status_code, "token request")
        if resp.status_code != 200:
            raise FhirError(resp.status_code, "token request", resp.text[:200])
        body = resp.json()
        self._token = str(body["access_token"])
        self._until = time.monotonic() + max(30, int(body.get("expires_in", 300)) - 60)
        return self._token


class FhirClient:
    """One practice's FHIR API (``with FhirClient(target) as c: ...``)."""

    def __init__(
        self, target: EhrFhirTarget, *, timeout: float = 15.0, attempts: int = 5, http: httpx.Client | None = None
    ) -> None:
        self.target = target
        self.base = target.base_url.rstrip("/")
        self.http = http or httpx.Client(timeout=timeout)
        self.auth = SmartBackendAuth(target, self.http) if target.auth == "smart-backend" else None
        self.attempts = attempts
        self.requests = 0  # sent, retries included (the day summary and tests read it)

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, url: str, what: str, **kw: Any) -> httpx.Response:
        # Taken out once, outside the retried closure: popping them inside it sent every retry
        # without If-Match (a blind overwrite of a staff change) and without the FHIR content type.
        extra_headers: dict[str, str] = dict(kw.pop("headers", None) or {})

        @retry(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=5, jitter=0.2),
            reraise=True,
        )
        def once() -> httpx.Response:
            headers = {"Accept": FHIR_JSON, **extra_headers}
            for refreshed in (False, True):
                if self.auth is not None:
                    headers["Authorization"] = f"Bearer {self.auth.token(refresh=refreshed)}"
                self.requests += 1
                resp = self.http.request(method, url, headers=headers, **kw)
                if resp.status_code != 401 or self.auth is None:
                    break  # a 401 with a cached token: the token was revoked or expired early; one fresh try
            if resp.status_code == 429 or resp.status_code >= 500:
                raise _Transient(resp.status_code, what)
            return resp

        return once()

    def read(self, rtype: str, rid: str) -> dict[str, Any] | None:
        """The current version, or None when the server has none (404/410)."""
        resp = self._send("GET", f"{self.base}/{rtype}/{rid}", f"read {rtype}")
        if resp.status_code in (404, 410):
            return None
        if resp.status_code != 200:
            raise FhirError(resp.status_code, f"read {rtype}", _diagnostics(resp))
        body: dict[str, Any] = resp.json()
        return body

    def put(self, resource: dict[str, Any], if_match: str | None = None) -> str:
        """Create-or-update at the resource's own id; returns the new version id.

        ``if_match`` (a version id) makes it an update of exactly that version; without it the
        server creates the resource (or overwrites it: only use it when the read said none)."""
        rtype, rid = resource["resourceType"], resource["id"]
        headers = {"Content-Type": FHIR_JSON}
        if if_match is not None:
            headers["If-Match"] = f'W/"{if_match}"'
        resp = self._send("PUT", f"{self.base}/{rtype}/{rid}", f"write {rtype}", json=resource, headers=headers)
        if resp.status_code in (409, 412):
            raise VersionConflict(resp.status_code, f"write {rtype}", _diagnostics(resp))
        if resp.status_code not in (200, 201):
            raise FhirError(resp.status_code, f"write {rtype}", _diagnostics(resp))
        etag = resp.headers.get("ETag", "")
        if etag:
            return etag.removeprefix("W/").strip('"')
        return str(((resp.json() or {}).get("meta") or {}).get("versionId", ""))

    def search(self, rtype: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Every resource of a search, following the Bundle's ``next`` links."""
        url: str | None = f"{self.base}/{rtype}"
        query: dict[str, str] | None = params
        while url is not None:
            resp = self._send("GET", url, f"search {rtype}", params=query)
            if resp.status_code != 200:
                raise FhirError(resp.status_code, f"search {rtype}", _diagnostics(resp))
            bundle = resp.json()
            for entry in bundle.get("entry") or []:
                if (entry.get("resource") or {}).get("resourceType") == rtype:
                    yield entry["resource"]
            url = next((link["url"] for link in bundle.get("link") or [] if link.get("relation") == "next"), None)
            query = None  # the next link carries the query

    def history(self, rtype: str, rid: str) -> Iterator[dict[str, Any]]:
        """Every stored version of one resource (``_history``, newest first, following ``next``
        links); none when the server has no such resource. The write-back reads it to tell a signed
        order it wrote, then staff changed, from one it never wrote (review s20 M1)."""
        url: str | None = f"{self.base}/{rtype}/{rid}/_history"
        while url is not None:
            resp = self._send("GET", url, f"history {rtype}")
            if resp.status_code in (404, 410):
                return
            if resp.status_code != 200:
                raise FhirError(resp.status_code, f"history {rtype}", _diagnostics(resp))
            bundle = resp.json()
            for entry in bundle.get("entry") or []:
                if (entry.get("resource") or {}).get("resourceType") == rtype:
                    yield entry["resource"]
            url = next((link["url"] for link in bundle.get("link") or [] if link.get("relation") == "next"), None)

    def history_count(self, rtype: str, rid: str) -> int:
        """How many versions the server holds of one resource (tests: a replay adds none)."""
        resp = self._send("GET", f"{self.base}/{rtype}/{rid}/_history", f"history {rtype}")
        if resp.status_code in (404, 410):
            return 0
        if resp.status_code != 200:
            raise FhirError(resp.status_code, f"history {rtype}", _diagnostics(resp))
        bundle = resp.json()
        return int(bundle.get("total") if bundle.get("total") is not None else len(bundle.get("entry") or []))
