"""HTTP ingest: FHIR R4 push and subscription notifications, fax webhooks, portal webhooks, X12 uploads.

Routes (``{practice}`` is the tenant id):

- ``POST /fhir/{practice}`` (any sub-path, e.g. ``/fhir/p1/Bundle`` or ``/fhir/p1/$notify``):
  a resource, a Bundle, or a subscription notification, as ``application/fhir+json``
  (or ``application/json``). 202 + OperationOutcome when accepted; 422 + OperationOutcome
  (and a dead letter) when invalid; 415 + OperationOutcome for FHIR XML or any other
  media type (XML is not parsed here; the dead letter keeps it for a redrive).
- ``POST /fax/{practice}``: multipart (``file`` + ``from``, ``to``, ``pages``) or a raw
  PDF/TIFF body with ``X-Fax-From``/``X-Fax-To``/``X-Fax-Pages`` headers. The original
  is stored content-addressed before the raw record is written.
- ``POST /portal/{practice}`` with ``X-Portal-Event`` (``intake.submitted``,
  ``refill.requested``, ``scheduling.requested``; or ``/portal/{practice}/{event}``),
  ``X-Portal-Timestamp`` and ``X-Portal-Signature`` (``sha256=`` hex HMAC-SHA256 of
  ``"{timestamp}." + body``; contract in ``processors/portal/normalize.py``). A replay
  of an event already accepted answers 200 ``duplicate`` without writing again
  (:mod:`~practiceflow.streams.gateways.replay`).
- ``POST /x12/{practice}``: one X12 file (835, 277/277CA, 271, 999, TA1, 837).
- ``GET /documents/{practice}?uri=<storage_uri>``: an original document of that practice.
- ``GET /healthz``, ``GET /metrics``.

Authentication: ``/fhir``, ``/fax``, ``/x12`` and ``/documents`` need
``Authorization: Bearer <token>`` with one of the practice's tokens (``gateway_tokens``,
two at once while rotating); the portal signs with its HMAC secrets (``portal_secrets``,
two at once too). A caller is the practice its credential belongs to, and may only use
its own practice's URLs. Checked from the headers alone, before any body is read:

- unknown practice -> 404, dead letter under the tenant ``_unknown``;
- no or wrong credential -> 401 ``unauthenticated``, dead letter under the URL's practice;
- another practice's credential -> 403 ``forbidden``, dead letter under the caller's practice.

The dead letter of a refused, unauthenticated request keeps *no* body: the bytes come
from someone we cannot name, reading them would let anyone make the gateway buffer and
store 16 MiB per request into a practice's dead-letter topic, and a real sender whose
token was rotated still holds its original and resends. It keeps the declared size,
media type and peer address instead. (The portal's HMAC covers the body, so the portal
reads a bounded body first; a bad signature's dead letter still keeps none of it.)

Bounds: at most ``max_concurrent_bodies`` bodies are read at once and their bytes are
charged to the process's read budget *before* they are read (the declared
Content-Length up front; chunked bodies chunk by chunk), else 503 + Retry-After; a body
must arrive within ``body_timeout_s`` (else 408 and a dead letter with its head).
Every refusal is dead-lettered; 503 + Retry-After when the gateway is saturated or Kafka
did not confirm (nothing stored; retry).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from practiceflow.processors.auth import (
    UNKNOWN_PRACTICE,
    bearer_token,
    practice_for_token,
    safe_label,
    valid_practice_id,
)
from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.sinks.docstore import DocumentStore, DocumentStoreUnavailable
from practiceflow.streams.clock import now_ms
from practiceflow.streams.gateways.base import GatewayCore, Outcome, Unavailable
from practiceflow.streams.gateways.replay import ReplayGuard

log = logging.getLogger("practiceflow.gateway.http")

MAGIC = (
    (b"%PDF", "application/pdf"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
HEAD_BYTES = 1024 * 1024  # what the dead letter of an oversize or timed-out body keeps
JSON_TYPES = frozenset({"application/json", "application/fhir+json", "application/json+fhir"})
XML_TYPES = frozenset({"application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir"})
UNAUTHENTICATED_PORTAL = frozenset({"bad_signature", "missing_signature", "no_secret"})
_ENCODED_DOTS = ("%2e", "%2f", "%5c")

Secret = str | bytes | SecretStr
# what a request holds of the read budget and the body slots (typed keys where aiohttp has them)
_RESERVED: Any = web.RequestKey("pf_reserved", int) if hasattr(web, "RequestKey") else "pf_reserved"
_BODY: Any = web.RequestKey("pf_body", bool) if hasattr(web, "RequestKey") else "pf_body"


def sniff_document(data: bytes) -> str | None:
    return next((ct for magic, ct in MAGIC if data.startswith(magic)), None)


@web.middleware
async def _retry_when_unavailable(request: web.Request, handler: Any) -> web.StreamResponse:
    """A dead letter or audit event Kafka did not confirm fails the request (503, retry)."""
    try:
        return await handler(request)
    except Unavailable:
        raise web.HTTPServiceUnavailable(headers={"Retry-After": "2"}, text="not recorded; retry") from None


def _outcome(severity: str, code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": text}]}


def _as_bytes(secret: Secret) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def secret_table(secrets: Mapping[str, Secret | Sequence[Secret]] | None) -> dict[str, tuple[bytes, ...]]:
    """practice -> its one or two secrets as bytes (a bare secret is one; a list holds current and next)."""
    out: dict[str, tuple[bytes, ...]] = {}
    for practice, value in (secrets or {}).items():
        items = [value] if isinstance(value, (str, bytes, SecretStr)) else list(value)
        out[practice] = tuple(b for b in (_as_bytes(s) for s in items) if b)
    return out


class HttpGateway:
    def __init__(
        self,
        core: GatewayCore,
        practices: set[str],
        docstore: DocumentStore,
        *,
        tokens: Mapping[str, Secret | Sequence[Secret]] | None = None,
        portal_secrets: Mapping[str, Secret | Sequence[Secret]] | None = None,
        host: str = "127.0.0.1",
        port: int = 8080,
        max_body_bytes: int = 16 * 1024 * 1024,
        signature_tolerance_s: int = 300,
        replay: ReplayGuard | None = None,
        max_concurrent_bodies: int = 64,
        body_timeout_s: float = 60.0,
    ) -> None:
        self.core = core
        self.practices = practices
        self.docstore = docstore
        self.tokens = secret_table(tokens)
        self.portal_secrets = secret_table(portal_secrets)
        self.host, self.port = host, port
        self.max_body_bytes = max_body_bytes
        self.tolerance = signature_tolerance_s
        self.replay = replay or ReplayGuard(None)
        self.max_concurrent_bodies = max_concurrent_bodies
        self.body_timeout_s = body_timeout_s
        self.bodies = 0  # bodies being read now
        self.runner: web.AppRunner | None = None
        self.app = web.Application(
            client_max_size=max_body_bytes, middlewares=[_retry_when_unavailable, self._release_reads]
        )
        self.app.add_routes(
            [
                web.post("/fhir/{practice}", self.fhir),
                web.post("/fhir/{practice}/{rest:.*}", self.fhir),
                web.post("/fax/{practice}", self.fax),
                web.post("/portal/{practice}", self.portal),
                web.post("/portal/{practice}/{event_type}", self.portal),
                web.post("/x12/{practice}", self.x12),
                web.get("/documents/{practice}", self.document),
                web.get("/healthz", self.healthz),
                web.get("/metrics", self.metrics),
            ]
        )

    async def start(self) -> int:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]  # the port bound when 0 was asked for
        return self.port

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    # ------------------------------------------------------------------ who is calling
    @web.middleware
    async def _release_reads(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Give back the read budget and body slot a handler took, however it ended."""
        try:
            return await handler(request)
        finally:
            reserved = request.get(_RESERVED, 0)
            if reserved:
                self.core.read_budget.release(reserved)
            if request.get(_BODY):
                self.bodies -= 1

    def _request_details(self, request: web.Request) -> dict[str, str]:
        """What a refusal's dead letter keeps instead of an unauthenticated body."""
        return {
            "method": request.method,
            "path": safe_label(request.raw_path, 200),
            "peer": safe_label(request.remote or ""),
            "declared_bytes": str(request.content_length if request.content_length is not None else "chunked"),
            "content_type": safe_label(request.headers.get("Content-Type", "")),
        }

    async def _refuse(
        self, request: web.Request, feed: str, practice: str, code: str, reason: str, **details: str
    ) -> None:
        """Dead letter (no body) + audit for a refused request; logged without any body or secret."""
        log.info("refused %s request for %s from %s: %s", feed, practice, request.remote, code)
        await self.core.reject(
            feed,
            practice,
            b"",
            code,
            reason,
            message_id=f"refused-{uuid.uuid4().hex}",
            details={**self._request_details(request), **details},
        )

    async def _practice(self, request: web.Request, feed: str) -> str:
        """The URL's practice if it is configured; else 404 and a dead letter under ``_unknown``."""
        practice = request.match_info["practice"]
        if valid_practice_id(practice) and practice in self.practices:
            return practice
        await self._refuse(
            request,
            feed,
            UNKNOWN_PRACTICE,
            "unknown_practice",
            "no such practice",
            claimed_practice=safe_label(practice),
        )
        raise web.HTTPNotFound(text="unknown practice")

    async def _authorize(self, request: web.Request, feed: str) -> str:
        """The practice the bearer token authenticates, which must be the URL's practice (401/403 otherwise)."""
        practice = await self._practice(request, feed)
        token = bearer_token(request.headers.get("Authorization"))
        caller = practice_for_token(token, self.tokens)
        if caller is None:
            reason = "no bearer token" if token is None else "bearer token not valid for any practice"
            await self._refuse(request, feed, practice, "unauthenticated", reason)
            raise web.HTTPUnauthorized(
                headers={"WWW-Authenticate": 'Bearer realm="practiceflow"'}, text=f"unauthenticated: {reason}"
            )
        if caller != practice:
            await self._refuse(
                request,
                feed,
                caller,
                "forbidden",
                "credential of another practice",
                target_practice=practice,
            )
            raise web.HTTPForbidden(text="forbidden: this credential is not valid for this practice")
        return practice

    async def _check_path(self, request: web.Request, feed: str, practice: str) -> None:
        """No dot segments, encoded dots/slashes or backslashes below the practice (400 otherwise)."""
        raw = request.raw_path.split("?", 1)[0]
        rest = request.match_info.get("rest", "")
        if (
            any(enc in raw.lower() for enc in _ENCODED_DOTS)
            or "\\" in raw
            or any(seg in (".", "..") for seg in rest.split("/"))
        ):
            await self._refuse(request, feed, practice, "bad_path", "dot segments or encoded dots/slashes in the path")
            raise web.HTTPBadRequest(text="bad path")

    # ------------------------------------------------------------------ bodies, bounded
    def _take_body_slot(self, request: web.Request) -> None:
        if self.core.saturated() or self.bodies >= self.max_concurrent_bodies:
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "1"}, text="busy; retry")
        self.bodies += 1
        request[_BODY] = True

    def _charge(self, request: web.Request, size: int) -> None:
        """Charge ``size`` more bytes of this request to the read budget, or 503 without reading them."""
        if not self.core.read_budget.try_reserve(size):
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "1"}, text="busy; retry")
        request[_RESERVED] = request.get(_RESERVED, 0) + size

    async def _body(self, request: web.Request, feed: str, practice: str, *, authenticated: bool) -> bytes:
        """The body, up to ``max_body_bytes``, counted before it is read; 413/408 + a dead letter with its head.

        The head is kept only for an ``authenticated`` sender; an unauthenticated caller's
        refusal keeps no body, only the request details (as every other refusal before
        authentication does), so nobody can store bytes under a practice they do not hold.

        A declared Content-Length is charged to the read budget before the first byte is
        read (only the head the dead letter keeps when it declares more than the limit);
        a chunked body is charged chunk by chunk. Either way a gateway whose budget is
        spent answers 503 instead of buffering.
        """
        self._take_body_slot(request)
        declared = request.content_length
        oversize_declared = declared is not None and declared > self.max_body_bytes
        if declared is not None:
            self._charge(request, HEAD_BYTES if oversize_declared else declared)
        cap = HEAD_BYTES if oversize_declared else self.max_body_bytes + 1
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while size < cap:
                    chunk = await request.content.read(min(64 * 1024, cap - size))
                    if not chunk:
                        break
                    if declared is None:
                        self._charge(request, len(chunk))
                    chunks.append(chunk)
                    size += len(chunk)
        except TimeoutError:
            await self._reject_body(
                request,
                feed,
                practice,
                b"".join(chunks)[:HEAD_BYTES],
                "body_timeout",
                f"body not complete within {self.body_timeout_s} s; first bytes kept",
                authenticated=authenticated,
            )
            raise web.HTTPRequestTimeout(text="body too slow") from None
        if oversize_declared or size > self.max_body_bytes:
            await self._reject_body(
                request,
                feed,
                practice,
                b"".join(chunks)[:HEAD_BYTES],
                "too_large",
                f"body larger than {self.max_body_bytes} bytes; first bytes kept",
                authenticated=authenticated,
            )
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_body_bytes, actual_size=max(size, declared or 0))
        return b"".join(chunks)

    async def _reject_body(
        self,
        request: web.Request,
        feed: str,
        practice: str,
        head: bytes,
        code: str,
        reason: str,
        *,
        authenticated: bool,
    ) -> None:
        """Dead-letter a body refused while reading: its head if the sender is authenticated, else nothing."""
        if authenticated:
            await self.core.reject(feed, practice, head, code, reason)
        else:
            await self._refuse(request, feed, practice, code, reason.replace("; first bytes kept", ""))

    async def _json_only(self, request: web.Request, feed: str, practice: str) -> web.Response | None:
        """415 (+ a dead letter keeping the body of this authenticated sender) unless the body is JSON."""
        ctype = request.content_type.lower()
        if ctype in JSON_TYPES:
            return None
        body = await self._body(request, feed, practice, authenticated=True)
        xml = ctype in XML_TYPES
        reason = (
            "FHIR XML is not accepted here; send application/fhir+json"
            if xml
            else f"media type {safe_label(ctype)!r} is not JSON; send application/json"
        )
        await self.core.reject(feed, practice, body, "unsupported_media_type", reason, details={"content_type": ctype})
        if feed == "fhir":
            return web.json_response(_outcome("error", "not-supported", reason), status=415)
        return web.json_response(
            {"accepted": False, "reason_code": "unsupported_media_type", "reason": reason}, status=415
        )

    # ------------------------------------------------------------------ writes
    async def _validated(
        self,
        feed: str,
        practice: str,
        body: bytes,
        normalize: Callable[[], NormalizeResult],
        headers: dict[str, str] | None = None,
    ) -> tuple[Outcome, NormalizeResult | None]:
        try:
            result = normalize()
        except Rejected as rej:
            return await self.core.reject(feed, practice, body, rej.reason_code, rej.reason), None
        outcome = await self._accept(feed, practice, body, result.message_id, headers=headers)
        return outcome, result

    async def _accept(
        self,
        feed: str,
        practice: str,
        body: bytes,
        message_id: str,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
        stored: tuple[str, str] | None = None,
    ) -> Outcome:
        try:
            outcome = await self.core.accept(
                feed, practice, body, message_id, headers=headers, content_type=content_type, stored=stored
            )
        except Unavailable:
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "2"}, text="not stored; retry") from None
        if not outcome.accepted:  # permanent refusal (dead-lettered): never a 503 "retry"
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.core.claim_check_bytes,
                actual_size=len(body),
                text=json.dumps({"accepted": False, "reason_code": outcome.reason_code, "reason": outcome.reason}),
                content_type="application/json",
            )
        return outcome

    # ------------------------------------------------------------------ routes
    async def fhir(self, request: web.Request) -> web.Response:
        from practiceflow.processors.fhir.normalize import normalize_fhir

        practice = await self._authorize(request, "fhir")
        await self._check_path(request, "fhir", practice)
        refused = await self._json_only(request, "fhir", practice)
        if refused is not None:
            return refused
        body = await self._body(request, "fhir", practice, authenticated=True)
        outcome, result = await self._validated(
            "fhir", practice, body, lambda: normalize_fhir(body, practice, now_ms())
        )
        if not outcome.accepted or result is None:
            return web.json_response(
                _outcome("error", "invalid", f"{outcome.reason_code}: {outcome.reason}"), status=422
            )
        return web.json_response(
            _outcome(
                "information", "informational", f"accepted {result.message_type}: {len(result.records)} record(s)"
            ),
            status=202,
            headers={"X-Message-Id": outcome.message_id},
        )

    async def x12(self, request: web.Request) -> web.Response:
        from practiceflow.processors.x12.normalize import normalize_x12

        practice = await self._authorize(request, "x12")
        body = await self._body(request, "x12", practice, authenticated=True)
        outcome, result = await self._validated("x12", practice, body, lambda: normalize_x12(body, practice, now_ms()))
        if not outcome.accepted or result is None:
            return web.json_response(
                {"accepted": False, "reason_code": outcome.reason_code, "reason": outcome.reason}, status=422
            )
        return web.json_response(
            {
                "accepted": True,
                "message_id": outcome.message_id,
                "transaction": result.message_type,
                "records": len(result.records),
            },
            status=202,
        )

    async def portal(self, request: web.Request) -> web.Response:
        from practiceflow.processors.portal.normalize import normalize_portal, verify_signature

        practice = await self._practice(request, "portal")
        event_type = request.match_info.get("event_type") or request.headers.get("X-Portal-Event") or ""
        timestamp = request.headers.get("X-Portal-Timestamp", "")
        signature = request.headers.get("X-Portal-Signature", "")
        if not timestamp or not signature:  # refused from the headers: no body read
            await self._refuse(
                request, "portal", practice, "missing_signature", "X-Portal-Timestamp/-Signature missing"
            )
            return web.json_response({"accepted": False, "reason_code": "missing_signature"}, status=401)
        body = await self._body(request, "portal", practice, authenticated=False)
        secrets = self.portal_secrets.get(practice, ())
        try:
            if not secrets:
                raise Rejected("no_secret", "no portal secret configured for this practice")
            failures: list[Rejected] = []
            for secret in secrets:  # current and next: either may have signed during a rotation
                try:
                    verify_signature(secret, body, timestamp, signature, now_s=time.time(), tolerance_s=self.tolerance)
                    break
                except Rejected as rej:
                    failures.append(rej)
            else:
                stale = [f for f in failures if f.reason_code == "stale_timestamp"]
                raise stale[0] if stale else failures[0]
        except Rejected as rej:
            kept = b"" if rej.reason_code in UNAUTHENTICATED_PORTAL else body  # stale: authentic, so kept
            await self.core.reject(
                "portal",
                practice,
                kept,
                rej.reason_code,
                rej.reason,
                message_id=None if kept else f"refused-{uuid.uuid4().hex}",
                details={"event_type": safe_label(event_type), **self._request_details(request)},
            )
            return web.json_response(
                {"accepted": False, "reason_code": rej.reason_code, "reason": rej.reason}, status=401
            )
        refused = await self._json_only(request, "portal", practice)
        if refused is not None:
            return refused
        try:
            result = normalize_portal(event_type, body, practice, now_ms())
        except Rejected as rej:
            await self.core.reject(
                "portal", practice, body, rej.reason_code, rej.reason, details={"event_type": event_type}
            )
            return web.json_response(
                {"accepted": False, "reason_code": rej.reason_code, "reason": rej.reason}, status=422
            )
        now_s = time.time()
        if self.replay.seen("portal", practice, result.message_id, now_s):
            return web.json_response({"accepted": True, "duplicate": True, "message_id": result.message_id})
        outcome = await self._accept("portal", practice, body, result.message_id, headers={"event_type": event_type})
        # a signature stays valid until its timestamp leaves the window: remember the id that long
        self.replay.remember("portal", practice, result.message_id, int(timestamp) + self.tolerance, now_s)
        return web.json_response({"accepted": True, "message_id": outcome.message_id}, status=202)

    async def fax(self, request: web.Request) -> web.Response:
        practice = await self._authorize(request, "fax")
        meta: dict[str, str] = {}
        if request.content_type.startswith("multipart/"):
            self._take_body_slot(request)
            declared = request.content_length
            if declared is not None and declared > self.max_body_bytes:
                await self.core.reject(
                    "fax", practice, b"", "too_large", f"multipart body larger than {self.max_body_bytes} bytes"
                )
                raise web.HTTPRequestEntityTooLarge(max_size=self.max_body_bytes, actual_size=declared)
            self._charge(request, declared if declared is not None else self.max_body_bytes)
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    form = await request.post()
            except web.HTTPRequestEntityTooLarge:
                await self.core.reject(
                    "fax", practice, b"", "too_large", f"multipart body larger than {self.max_body_bytes} bytes"
                )
                raise
            except TimeoutError:
                await self.core.reject("fax", practice, b"", "body_timeout", "multipart body too slow")
                raise web.HTTPRequestTimeout(text="body too slow") from None
            upload = form.get("file")
            data = upload.file.read() if isinstance(upload, web.FileField) else b""
            for k in ("from", "to", "pages"):
                if form.get(k):
                    meta[k] = str(form[k])
            if isinstance(upload, web.FileField) and upload.filename:
                meta["filename"] = upload.filename
        else:
            data = await self._body(request, "fax", practice, authenticated=True)
            for k in ("from", "to", "pages"):
                v = request.headers.get(f"X-Fax-{k.title()}")
                if v:
                    meta[k] = v
        kind = sniff_document(data)
        if not data:
            outcome = await self.core.reject("fax", practice, data, "empty_document", "no document in the request")
            return web.json_response({"accepted": False, "reason_code": outcome.reason_code}, status=422)
        if kind is None:
            outcome = await self.core.reject(
                "fax",
                practice,
                data,
                "unsupported_document_type",
                "not a PDF, TIFF, PNG or JPEG (checked by content, not name)",
            )
            return web.json_response({"accepted": False, "reason_code": outcome.reason_code}, status=415)
        try:  # off the event loop: S3 is a network round trip
            sha, uri = await asyncio.to_thread(self.docstore.put, data, practice)
        except DocumentStoreUnavailable as e:
            log.warning("document store unavailable: %s", e)
            raise web.HTTPServiceUnavailable(
                headers={"Retry-After": "5"}, text="document store unavailable; retry"
            ) from None
        meta.update({"storage_uri": uri, "sha256": sha, "content_type": kind})
        outcome = await self._accept("fax", practice, data, sha, headers=meta, content_type=kind, stored=(sha, uri))
        return web.json_response({"accepted": True, "message_id": outcome.message_id, "storage_uri": uri}, status=202)

    async def document(self, request: web.Request) -> web.Response:
        """An original document, only to a caller authenticated as the practice that owns it."""
        practice = await self._authorize(request, "fax")
        uri = request.query.get("uri", "")
        try:
            data = await asyncio.to_thread(self.docstore.get, uri, practice)
        except PermissionError:
            await self._refuse(request, "fax", practice, "forbidden", "document of another practice")
            raise web.HTTPForbidden(text="forbidden: document of another practice") from None
        except (ValueError, FileNotFoundError):
            raise web.HTTPNotFound(text="no such document") from None
        except DocumentStoreUnavailable:
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"}, text="document store unavailable") from None
        # reading PHI is audited like writing it
        await self.core._audit(
            practice, "read", "fax", uri.rsplit("/", 1)[-1], "document read", {"peer": safe_label(request.remote or "")}
        )
        return web.Response(body=data, content_type=sniff_document(data) or "application/octet-stream")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True, "saturated": self.core.saturated(), "stats": self.core.stats})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
