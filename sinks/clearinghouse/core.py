"""CAQH CORE real-time connectivity (HTTP MIME multipart), the envelope clearinghouses accept.

The Phase II CORE 270 Connectivity Rule's MIME multipart envelope: one ``multipart/form-data``
POST with the fields ``ProcessingMode`` (``RealTime``), ``PayloadType``
(``X12_270_Request_005010X279A1``), ``PayloadID`` (a UUID; ours is derived from the command's
idempotency key, so a resend carries the same id), ``TimeStamp`` (xsd:dateTime, UTC),
``SenderID``, ``ReceiverID``, ``CORERuleVersion`` (``2.2.0``), optional ``UserName`` /
``Password``, and ``Payload`` (the 270). The answer is the same envelope with
``PayloadType`` ``X12_271_Response_005010X279A1``, ``ErrorCode`` (``Success`` or a CORE error
code) and ``ErrorMessage``.

Mapping to the connector interface: HTTP 5xx / 429 / connection errors -> :class:`Transient`
(retried); ``ErrorCode`` other than ``Success`` or a 4xx -> :class:`Refused` (not retried,
the check ends "could not determine" with the error); a ``Success`` without a 271 payload ->
:class:`Refused` too. The local simulator (``practiceflow/localstack/clearinghouse.py``)
speaks this envelope; no real clearinghouse can be reached from here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import aiohttp

from practiceflow.sinks.clearinghouse.base import EligibilityRequest, Refused, Transient

__all__ = ["CoreConnector", "payload_id_for", "REQUEST_PAYLOAD_TYPE", "RESPONSE_PAYLOAD_TYPE", "CORE_RULE_VERSION"]

REQUEST_PAYLOAD_TYPE = "X12_270_Request_005010X279A1"
RESPONSE_PAYLOAD_TYPE = "X12_271_Response_005010X279A1"
CORE_RULE_VERSION = "2.2.0"
_NAMESPACE = uuid.UUID("6f1c5d1e-3b7a-4c58-9a55-2f5e0b1d7c11")  # practiceflow's namespace for PayloadIDs


def payload_id_for(command_id: str) -> str:
    """A UUID (RFC 4122 v5) from the command's idempotency key: the same check, the same PayloadID."""
    return str(uuid.uuid5(_NAMESPACE, command_id))


class CoreConnector:
    """Real-time 270/271 over the CORE MIME envelope to ``url``."""

    name = "core"

    def __init__(
        self,
        url: str,
        *,
        sender_id: str,
        receiver_id: str,
        username: str | None = None,
        password: str | None = None,
        clock: type[datetime] = datetime,
    ) -> None:
        self.url = url
        self.sender_id = sender_id
        self.receiver_id = receiver_id
        self.username = username
        self.password = password
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    def _form(self, request: EligibilityRequest) -> aiohttp.FormData:
        form = aiohttp.FormData()
        fields = {
            "ProcessingMode": "RealTime",
            "PayloadType": REQUEST_PAYLOAD_TYPE,
            "PayloadID": request.payload_id,
            "TimeStamp": self._clock.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "SenderID": self.sender_id,
            "ReceiverID": self.receiver_id,
            "CORERuleVersion": CORE_RULE_VERSION,
        }
        if self.username:
            fields["UserName"] = self.username
            fields["Password"] = self.password or ""
        for k, v in fields.items():
            form.add_field(k, v)
        form.add_field("Payload", request.x12_270.decode("ascii", "replace"))
        return form

    async def exchange(self, request: EligibilityRequest, timeout_s: float) -> bytes:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                self.url, data=self._form(request), timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise Transient(f"HTTP {resp.status} from the clearinghouse")
                if resp.status >= 400:
                    raise Refused(f"HTTP {resp.status}: {(await resp.text())[:200]}")
                fields = await _read_multipart(resp)
        except aiohttp.ClientError as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        code = fields.get("ErrorCode", "")
        if code != "Success":
            raise Refused(f"CORE ErrorCode {code or 'missing'}: {fields.get('ErrorMessage', '')[:200]}")
        if fields.get("PayloadType") != RESPONSE_PAYLOAD_TYPE or not fields.get("Payload"):
            raise Refused(f"CORE answer without a 271 payload (PayloadType {fields.get('PayloadType')!r})")
        if fields.get("PayloadID") and fields["PayloadID"] != request.payload_id:
            raise Refused("CORE answer for another PayloadID")
        return fields["Payload"].encode()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_multipart(resp: aiohttp.ClientResponse) -> dict[str, str]:
    if not resp.content_type.startswith("multipart/"):
        raise Refused(f"CORE answer is {resp.content_type}, not MIME multipart")
    reader = aiohttp.MultipartReader.from_response(resp)
    fields: dict[str, str] = {}
    while True:
        part = await reader.next()
        if part is None:
            break
        if isinstance(part, aiohttp.BodyPartReader) and part.name:
            fields[part.name] = (await part.read(decode=True)).decode("utf-8", "replace")
    return fields
