"""Gateways fail closed when configured halfway, and keep nothing of an unauthenticated body.

Review defects: a client CA (or client mapping) without the server certificate gave a
plaintext listener that authenticated nobody; a plain MLLP listener could write as a
practice the gateways do not accept; the portal route dead-lettered the head of an
unauthenticated caller's oversize or slow body under the URL's practice. Writes are
recorded (tests/gateways/recording.py); no broker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError

from practiceflow.jobs.gateways import mllp_gateway, tls_context
from practiceflow.settings import Settings
from practiceflow.sinks.docstore import LocalDocumentStore
from practiceflow.streams.gateways.http import HttpGateway
from practiceflow.streams.gateways.mllp import MllpGateway
from tests.gateways.recording import recording_core, written

CA, CERT, KEY = Path("/nonexistent/ca.pem"), Path("/nonexistent/server.pem"), Path("/nonexistent/server.key")
MAPPING = {"cn:ehr-a": "clinic-a"}


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"mllp_tls_client_ca": CA, "mllp_client_practices": MAPPING}, "need mllp_tls_cert and mllp_tls_key"),
        ({"mllp_tls_client_ca": CA}, "need mllp_tls_cert and mllp_tls_key"),
        ({"mllp_client_practices": MAPPING}, "need mllp_tls_cert and mllp_tls_key"),
        ({"mllp_tls_cert": CERT, "mllp_tls_key": KEY, "mllp_tls_client_ca": CA}, "needs mllp_client_practices"),
        ({"mllp_tls_cert": CERT, "mllp_tls_key": KEY, "mllp_client_practices": MAPPING}, "needs mllp_tls_client_ca"),
    ],
)
def test_half_configured_mllp_tls_refuses_to_start(update: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(practices=["clinic-a"], **update)  # type: ignore[arg-type]
    # settings built by model_copy skip validators: the gateway builder refuses too
    cfg = Settings(practices=["clinic-a"], default_practice_id="clinic-a").model_copy(update=update)
    core, _, _ = recording_core()
    with pytest.raises(ValueError, match=message):
        tls_context(cfg)
    with pytest.raises(ValueError, match=message):
        mllp_gateway(cfg, core, port=0)


def test_a_plain_mllp_listener_only_speaks_for_a_configured_practice() -> None:
    core, _, _ = recording_core()
    with pytest.raises(ValueError, match="not one of the configured practices"):
        MllpGateway(core, "clinic-z", practices=["clinic-a", "clinic-b"], port=0)
    cfg = Settings(practices=["clinic-a"], default_practice_id="clinic-a").model_copy(
        update={"mllp_practice_id": "clinic-z"}
    )
    with pytest.raises(ValueError, match="'clinic-z' is not one of the configured practices"):
        mllp_gateway(cfg, core, port=0)
    assert mllp_gateway(cfg.model_copy(update={"mllp_practice_id": "clinic-a"}), core, port=0).practice_id == "clinic-a"


def test_the_portal_keeps_no_body_of_an_unauthenticated_oversize_or_slow_request(tmp_path: Path) -> None:
    forged = {"X-Portal-Timestamp": "1700000000", "X-Portal-Signature": "sha256=00", "Content-Type": "application/json"}
    secret_bytes = b'{"patient": "Zebulon-Quixote"}' + b" " * 4000

    async def go() -> tuple[dict[str, object], list[dict[str, object]]]:
        core, producer, serde = recording_core()
        gw = HttpGateway(
            core,
            {"clinic-x"},
            LocalDocumentStore((tmp_path / "docs").as_uri()),
            portal_secrets={"clinic-x": "sx"},
            port=0,
            max_body_bytes=1000,
            body_timeout_s=0.5,
        )
        await gw.start()
        out: dict[str, object] = {}
        try:
            async with (
                aiohttp.ClientSession(base_url=f"http://127.0.0.1:{gw.port}") as http,
                http.post("/portal/clinic-x", data=secret_bytes, headers=forged) as r,
            ):
                out["oversize"] = r.status
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            head = "".join(f"{k}: {v}\r\n" for k, v in forged.items())
            writer.write(
                f"POST /portal/clinic-x HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 900\r\n\r\n".encode()
                + secret_bytes[:200]
            )
            await writer.drain()
            out["slow"] = (await asyncio.wait_for(reader.readline(), 5)).strip()
            writer.close()
        finally:
            await gw.stop()
        return out, written(producer, serde, "dlq.portal")

    out, letters = asyncio.run(go())
    assert out == {"oversize": 413, "slow": b"HTTP/1.1 408 Request Timeout"}
    assert sorted(str(v["reason_code"]) for v in letters) == ["body_timeout", "too_large"]
    for v in letters:
        assert v["payload"] == b"" and not v.get("payload_uri"), v["reason_code"]
        details = v["details"]
        assert isinstance(details, dict) and details["path"] == "/portal/clinic-x" and "peer" in details
    assert not any((tmp_path / "docs").rglob("*.*"))  # nothing claim-checked into the practice's store
