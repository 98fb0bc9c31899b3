"""HTTP ingest: FHIR R4 push and subscription notifications, fax webhooks, portal webhooks, X12 uploads.

Routes (``{practice}`` is the tenant id; unknown practices get 404):

- ``POST /fhir/{practice}`` (any sub-path, e.g. ``/fhir/p1/Bundle`` or ``/fhir/p1/$notify``):
  a resource, a Bundle, or a subscription notification. 202 + OperationOutcome when
  accepted; 422 + OperationOutcome (and a dead letter) when invalid.
- ``POST /fax/{practice}``: multipart (``file`` + ``from``, ``to``, ``pages``) or a raw
  PDF/TIFF body with ``X-Fax-From``/``X-Fax-To``/``X-Fax-Pages`` headers. The original
  is stored content-addressed before the raw record is written.
- ``POST /portal/{practice}`` with ``X-Portal-Event`` (``intake.submitted``,
  ``refill.requested``, ``scheduling.requested``; or ``/portal/{practice}/{event}``),
  ``X-Portal-Timestamp`` and ``X-Portal-Signature`` (``sha256=`` hex HMAC-SHA256 of
  ``"{timestamp}." + body``; contract in ``processors/portal/normalize.py``). A replay
  of an event already accepted answers 200 ``duplicate`` without writing again.
- ``POST /x12/{practice}``: one X12 file (835, 277/277CA, 271, 999, TA1, 837).
- ``GET /healthz``, ``GET /metrics``.

Every refusal is dead-lettered with the original bytes; 503 + Retry-After when the
gateway is saturated or Kafka did not confirm (nothing stored; retry).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.sinks.docstore import DocumentStore, DocumentStoreUnavailable
from practiceflow.streams.clock import now_ms
from practiceflow.streams.gateways.base import GatewayCore, Outcome, Unavailable

log = logging.getLogger("practiceflow.gateway.http")

MAGIC = (
    (b"%PDF", "application/pdf"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


def sniff_document(data: bytes) -> str | None:
    return next((ct for magic, ct in MAGIC if data.startswith(magic)), None)


@web.middleware
async def _retry_when_unavailable(request: web.Request, handler: Any) -> web.StreamResponse:
    """A dead letter or audit event Kafka did not confirm fails the request (503, retry)."""
    try:
        return await handler(request)
    except Unavailable:
        raise web.HTTPServiceUnavailable(headers={"Retry-After": "2"}, text="not recorded; retry") from None


def _outcome(severity: str, code: str, text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": text}]}


class HttpGateway:
    def __init__(
        self,
        core: GatewayCore,
        practices: set[str],
        docstore: DocumentStore,
        *,
        portal_secrets: dict[str, str],
        host: str = "127.0.0.1",
        port: int = 8080,
        max_body_bytes: int = 16 * 1024 * 1024,
        signature_tolerance_s: int = 300,
    ) -> None:
        self.core = core
        self.practices = practices
        self.docstore = docstore
        self.portal_secrets = portal_secrets
        self.host, self.port = host, port
        self.max_body_bytes = max_body_bytes
        self.tolerance = signature_tolerance_s
        self.runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[_retry_when_unavailable])
        self.app.add_routes(
            [
                web.post("/fhir/{practice}", self.fhir),
                web.post("/fhir/{practice}/{rest:.*}", self.fhir),
                web.post("/fax/{practice}", self.fax),
                web.post("/portal/{practice}", self.portal),
                web.post("/portal/{practice}/{event_type}", self.portal),
                web.post("/x12/{practice}", self.x12),
                web.get("/healthz", self.healthz),
                web.get("/metrics", self.metrics),
            ]
        )

    async def start(self) -> int:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    # ------------------------------------------------------------------ shared
    def _practice(self, request: web.Request) -> str:
        practice = request.match_info["practice"]
        if practice not in self.practices:
            raise web.HTTPNotFound(text=f"unknown practice {practice!r}")
        return practice

    async def _body(self, request: web.Request, feed: str, practice: str) -> bytes:
        """The request body, up to ``max_body_bytes``; past that 413 and a dead letter with the head kept."""
        if self.core.saturated():
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "1"}, text="busy; retry")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body_bytes:
                head = b"".join(chunks)[: 1024 * 1024]
                await self.core.reject(
                    feed, practice, head, "too_large", f"body larger than {self.max_body_bytes} bytes; first bytes kept"
                )
                raise web.HTTPRequestEntityTooLarge(max_size=self.max_body_bytes, actual_size=size)
        return b"".join(chunks)

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
    ) -> Outcome:
        try:
            return await self.core.accept(feed, practice, body, message_id, headers=headers, content_type=content_type)
        except Unavailable:
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "2"}, text="not stored; retry")

    # ------------------------------------------------------------------ routes
    async def fhir(self, request: web.Request) -> web.Response:
        from practiceflow.processors.fhir.normalize import normalize_fhir

        practice = self._practice(request)
        body = await self._body(request, "fhir", practice)
        outcome, result = await self._validated(
            "fhir", practice, body, lambda: normalize_fhir(body, practice, now_ms())
        )
        if not outcome.accepted:
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

        practice = self._practice(request)
        body = await self._body(request, "x12", practice)
        outcome, result = await self._validated("x12", practice, body, lambda: normalize_x12(body, practice, now_ms()))
        if not outcome.accepted:
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

        practice = self._practice(request)
        event_type = request.match_info.get("event_type") or request.headers.get("X-Portal-Event", "")
        body = await self._body(request, "portal", practice)
        secret = self.portal_secrets.get(practice)
        try:
            if not secret:
                raise Rejected("no_secret", "no portal secret configured for this practice")
            verify_signature(
                secret.encode(),
                body,
                request.headers.get("X-Portal-Timestamp", ""),
                request.headers.get("X-Portal-Signature", ""),
                now_s=time.time(),
                tolerance_s=self.tolerance,
            )
            result = normalize_portal(event_type, body, practice, now_ms())
        except Rejected as rej:
            await self.core.reject(
                "portal", practice, body, rej.reason_code, rej.reason, details={"event_type": event_type}
            )
            status = (
                401
                if rej.reason_code in ("bad_signature", "stale_timestamp", "missing_signature", "no_secret")
                else 422
            )
            return web.json_response(
                {"accepted": False, "reason_code": rej.reason_code, "reason": rej.reason}, status=status
            )
        if self.core.accepted_recently("portal", practice, result.message_id):
            return web.json_response({"accepted": True, "duplicate": True, "message_id": result.message_id})
        outcome = await self._accept("portal", practice, body, result.message_id, headers={"event_type": event_type})
        return web.json_response({"accepted": True, "message_id": outcome.message_id}, status=202)

    async def fax(self, request: web.Request) -> web.Response:
        practice = self._practice(request)
        meta: dict[str, str] = {}
        if request.content_type.startswith("multipart/"):
            if self.core.saturated():
                raise web.HTTPServiceUnavailable(headers={"Retry-After": "1"}, text="busy; retry")
            try:
                form = await request.post()
            except web.HTTPRequestEntityTooLarge:
                await self.core.reject(
                    "fax", practice, b"", "too_large", f"multipart body larger than {self.max_body_bytes} bytes"
                )
                raise
            upload = form.get("file")
            data = upload.file.read() if hasattr(upload, "file") else b""
            for k in ("from", "to", "pages"):
                if form.get(k):
                    meta[k] = str(form[k])
            if hasattr(upload, "filename") and upload.filename:
                meta["filename"] = upload.filename
        else:
            data = await self._body(request, "fax", practice)
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
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"}, text="document store unavailable; retry")
        meta.update({"storage_uri": uri, "sha256": sha, "content_type": kind})
        outcome = await self._accept("fax", practice, data, sha, headers=meta, content_type=kind)
        return web.json_response({"accepted": True, "message_id": outcome.message_id, "storage_uri": uri}, status=202)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True, "saturated": self.core.saturated(), "stats": self.core.stats})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
