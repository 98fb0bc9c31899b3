"""Clearinghouse connectors against the simulator process: CORE envelope, folder drop, latency,
outages, retries, the per-payer rate limit. A check that cannot complete says why; never raises."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import pytest

from practiceflow.localstack.clearinghouse import SimulatorProcess
from practiceflow.localstack.ports import free_port
from practiceflow.processors.x12.build270 import Inquiry270, Person270, build_270
from practiceflow.processors.x12.normalize import normalize_x12
from practiceflow.sinks.clearinghouse import (
    CoreConnector,
    EligibilityClient,
    EligibilityRequest,
    FolderConnector,
    payload_id_for,
)
from practiceflow.sinks.clearinghouse.base import PayerRateLimiter


def request(member: str = "W123", payer: str = "60054", cid: str | None = None) -> EligibilityRequest:
    q = Inquiry270(
        trace_number="PFTRACE1",
        payer_id=payer,
        payer_name="AETNA TEST PLAN",
        provider_npi="1234567893",
        provider_name="DEMO CLINIC",
        subscriber=Person270("RIVERA", "ANA", "1988-02-29", "F", member),
        service_date="2026-12-10",
        created_at=datetime(2026, 12, 1, 15, 0),  # noqa: DTZ001
    )
    cid = cid or f"eligibility:{member}:{payer}"
    return EligibilityRequest(cid, "clinic-a", payer, build_270(q), payload_id_for(cid))


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(free_port()) as s:
        yield s


@pytest.fixture(autouse=True)
def _reset(request):
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").configure(reset=True, latency_ms=0, outage=False, fail_first=0)


def client(sim, **kw) -> EligibilityClient:
    kw.setdefault("backoff_s", 0.05)
    return EligibilityClient(CoreConnector(sim.url, sender_id="PRACTICEFLOW", receiver_id="CLEARINGHOUSE"), **kw)


def run(coro):
    return asyncio.run(coro)


async def _check(c: EligibilityClient, req: EligibilityRequest, budget: float = 10.0):
    try:
        return await c.check(req, budget)
    finally:
        await c.close()


def test_core_round_trip_returns_a_271_our_reader_reads(sim):
    ans = run(_check(client(sim), request("W555")))
    assert ans.outcome == "ok" and ans.attempts == 1
    (rec,) = [r.value for r in normalize_x12(ans.x12_271, "clinic-a", 0).records]
    assert rec["active"] is True and rec["member_id"] == "W555" and rec["trace_number"] == "PFTRACE1"
    got = sim.stats()["received"]
    assert [g["payload_id"] for g in got] == [payload_id_for("eligibility:W555:60054")]


def test_core_envelope_fields_and_errors(sim):
    async def post(fields):
        form = aiohttp.FormData()
        for k, v in fields.items():
            form.add_field(k, v)
        async with aiohttp.ClientSession() as s, s.post(sim.url, data=form) as r:
            reader = aiohttp.MultipartReader.from_response(r)
            out = {}
            while (part := await reader.next()) is not None:
                out[part.name] = (await part.read()).decode()
            return r.status, out

    base = {
        "ProcessingMode": "RealTime",
        "PayloadType": "X12_270_Request_005010X279A1",
        "PayloadID": "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        "TimeStamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "SenderID": "PRACTICEFLOW",
        "ReceiverID": "CLEARINGHOUSE",
        "CORERuleVersion": "2.2.0",
        "Payload": request().x12_270.decode(),
    }
    status, ok = run(post(base))
    assert status == 200 and ok["ErrorCode"] == "Success" and ok["PayloadType"] == "X12_271_Response_005010X279A1"
    assert ok["PayloadID"] == base["PayloadID"] and ok["ReceiverID"] == "PRACTICEFLOW"
    _, bad = run(post({**base, "PayloadType": "X12_276_Request_005010X212"}))
    assert bad["ErrorCode"] == "PayloadTypeNotSupported"
    _, missing = run(post({k: v for k, v in base.items() if k != "SenderID"}))
    assert missing["ErrorCode"] == "SenderIDRequired"


def test_latency_under_the_timeout_is_ok_over_it_is_timeout(sim):
    sim.configure(latency_ms=200)
    ok = run(_check(client(sim, attempt_timeout_s=2.0), request("W1")))
    assert ok.outcome == "ok"
    slow = run(_check(client(sim, attempt_timeout_s=0.05, max_attempts=3), request("W2"), budget=5.0))
    assert slow.outcome in ("failed", "timeout") and slow.attempts == 3
    assert "TimeoutError" in (slow.reason or "")


def test_outage_is_retried_then_ends_with_the_reason_and_a_short_outage_recovers(sim):
    sim.configure(outage=True)
    down = run(_check(client(sim, max_attempts=10), request("W3"), budget=1.0))
    assert down.outcome == "timeout" and "HTTP 503" in (down.reason or "") and down.attempts >= 2
    sim.configure(outage=False, fail_first=2, reset=True)
    back = run(_check(client(sim), request("W4")))
    assert back.outcome == "ok" and back.attempts == 3
    # every attempt carried the same PayloadID: the clearinghouse can tell a retry from a new check
    assert {g["payload_id"] for g in sim.stats()["received"]} == {payload_id_for("eligibility:W4:60054")}


def test_refused_envelope_is_not_retried(sim):
    class Wrong(CoreConnector):
        def _form(self, req):
            form = aiohttp.FormData()
            form.add_field("PayloadType", "X12_999")
            form.add_field("Payload", "x")
            return form

    c = EligibilityClient(Wrong(sim.url, sender_id="A", receiver_id="B"), backoff_s=0.01)
    ans = run(_check(c, request("W5")))
    assert ans.outcome == "refused" and ans.attempts == 1 and "PayloadTypeNotSupported" in (ans.reason or "")


def test_unreachable_clearinghouse_fails_with_connection_errors():
    dead = EligibilityClient(
        CoreConnector(f"http://127.0.0.1:{free_port()}/core/realtime", sender_id="A", receiver_id="B"),
        backoff_s=0.01,
        max_attempts=3,
    )
    ans = run(_check(dead, request("W6")))
    assert ans.outcome == "failed" and ans.attempts == 3 and "Transient" in (ans.reason or "")


def test_rate_limiter_token_bucket_is_exact_with_a_fake_clock():
    now = [0.0]
    lim = PayerRateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    assert [lim._take("p") for _ in range(3)] == [0.0, 0.0, 0.5]  # burst of 2, then wait half a second
    assert lim._take("other") == 0.0  # per payer
    now[0] = 0.5
    assert lim._take("p") == 0.0
    now[0] = 0.6
    assert lim._take("p") == pytest.approx(0.4)


def test_rate_limit_per_payer_holds_against_the_simulator(sim):
    c = client(sim, rate_per_payer=4.0, burst=1)

    async def many():
        try:
            return await asyncio.gather(*(c.check(request(f"W7{i}", cid=f"c{i}"), 10.0) for i in range(6)))
        finally:
            await c.close()

    answers = run(many())
    assert [a.outcome for a in answers] == ["ok"] * 6
    times = sorted(g["at"] for g in sim.stats()["received"])
    # 6 requests at 4/s with a burst of 1: the last starts at least 5 intervals after the first
    assert times[-1] - times[0] >= 5 / 4 - 0.1


def test_rate_limit_gives_up_at_the_deadline_with_the_reason(sim):
    c = client(sim, rate_per_payer=0.5, burst=1)

    async def two():
        try:
            return await asyncio.gather(c.check(request("W81", cid="a"), 1.0), c.check(request("W82", cid="b"), 1.0))
        finally:
            await c.close()

    a, b = run(two())
    assert a.outcome == "ok" and b.outcome == "timeout" and "rate limit for payer 60054" in (b.reason or "")


def test_folder_drop_round_trip_and_no_second_drop(tmp_path):
    out, inbox = tmp_path / "out", tmp_path / "in"
    with SimulatorProcess(free_port(), outbox=out, inbox=inbox) as sim:
        c = EligibilityClient(FolderConnector(out, inbox, poll_s=0.05), backoff_s=0.05)
        ans = run(_check(c, request("W9"), budget=20.0))
        assert ans.outcome == "ok"
        (rec,) = [r.value for r in normalize_x12(ans.x12_271, "clinic-a", 0).records]
        assert rec["member_id"] == "W9"
        assert (inbox / "done" / f"{payload_id_for('eligibility:W9:60054')}.271").exists()
        # the same request again: the 270 was handed over already, so nothing is dropped twice
        FolderConnector(out, inbox)._drop(request("W9"))
        assert not list(out.glob("*.270"))
        sim.configure(outage=True)
        lost = run(
            _check(
                EligibilityClient(FolderConnector(out, inbox, poll_s=0.05), backoff_s=0.05), request("W10"), budget=1.0
            )
        )
        assert lost.outcome == "timeout" and "no 271" in (lost.reason or "")
