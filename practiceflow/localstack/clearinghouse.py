"""A local clearinghouse simulator: answers 270s with 271s from payer fixtures. NOT a real clearinghouse.

No real clearinghouse can be reached from a development machine (they need a contract,
enrollment and credentials), so the embedded default is this simulator: a real HTTP server
process (aiohttp) speaking the CAQH CORE real-time MIME multipart envelope
(``POST /core/realtime``), and optionally a batch folder worker (``--outbox``/``--inbox``:
it picks up ``*.270`` files and writes ``<PayloadID>.271`` answers). It reads each 270 with
the project's own reader (``processors/x12/build270.read_270``) and answers from fixtures:

* payers: :data:`PAYERS` (the ids in ``rules/intake/payers.yaml``); an unknown payer id gets
  ``AAA*N**79*C`` (invalid participant) at payer level; payer ``99999`` is "offline" and
  gets ``AAA*Y**42*R`` (unable to respond at current time);
* the member id's prefix picks the answer (:data:`SCENARIOS`): ``INACT`` inactive (EB*6),
  ``ENDED`` plan ended ten days before the visit (DTP*347), ``OON`` out of network (EB12 N),
  ``NCOV`` service not covered (EB*I), ``PRIORAUTH`` authorization required (EB11 Y),
  ``HDED`` remaining deductible 3,500 USD, ``COB`` another payer (EB*R + 2120 loop),
  ``NOTFOUND`` subscriber not found (AAA 75), ``BADDOB`` DOB mismatch (AAA 71),
  ``GARBAGE`` a payload that is not X12; anything else is active and clean.

Behaviour a test or the day job can set at start (flags) or at run time
(``POST /admin/config`` JSON): ``latency_ms`` (every answer), ``slow_ms`` (members whose
id starts ``SLOW``), ``outage`` (every request answered HTTP 503), ``fail_first`` (the
next N requests answered 503, then normal: a transient outage). ``GET /admin/stats``
returns what it received (PayloadIDs, payers, arrival times) so tests can check that a
replay did not send a 270 twice and that a rate limit held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import MultipartWriter, web

from practiceflow.processors.base import Rejected
from practiceflow.processors.x12.build270 import Inquiry270, read_270

PAYERS: dict[str, str] = {
    "60054": "AETNA TEST PLAN",
    "87726": "UNITED TEST HEALTH",
    "00430": "MEDICARE TEST B",
    "62308": "CIGNA TEST",
    "99999": "OFFLINE TEST PAYER",
}
OFFLINE_PAYERS = frozenset({"99999"})
SCENARIOS = ("INACT", "ENDED", "OON", "NCOV", "PRIORAUTH", "HDED", "COB", "NOTFOUND", "BADDOB", "GARBAGE", "SLOW")
REQUEST_PAYLOAD_TYPE = "X12_270_Request_005010X279A1"
RESPONSE_PAYLOAD_TYPE = "X12_271_Response_005010X279A1"


def scenario_of(member_id: str | None) -> str:
    m = (member_id or "").upper()
    for s in SCENARIOS:
        if m.startswith(s):
            return s
    return "CLEAN"


def _eb(*elements: str, **at: str) -> str:
    """An EB segment: positional EB01.. plus keyword positions e.g. ``e11="Y"``."""
    els = list(elements)
    for k, v in at.items():
        i = int(k[1:])
        while len(els) < i:
            els.append("")
        els[i - 1] = v
    return "EB*" + "*".join(els)


def _benefits(scenario: str, st: str) -> list[str]:
    plan = "GOLD PLAN"
    if scenario == "INACT":
        return [_eb("6", "", st)]
    if scenario == "NCOV":
        return (
            [_eb("1", "", "30", "", plan), _eb("I", "", st, e12="Y")]
            if st != "30"
            else [
                _eb("1", "", "30", "", plan),
                _eb("I", "", "30", e12="Y"),
            ]
        )
    net = "N" if scenario == "OON" else "Y"
    out = [
        _eb("1", "", st, "", plan, e11="Y" if scenario == "PRIORAUTH" else "", e12=net),
        _eb("B", "", st, "", "", "27", "25.00", e12=net),
        _eb("C", "IND", st, "", "", "29", "3500.00" if scenario == "HDED" else "250.00", e12=net),
        _eb("A", "", st, "", "", "", "", ".2", e12=net),
    ]
    if scenario == "COB":
        out += [_eb("R", "", st), "LS*2120", "NM1*PR*2*OTHER TEST PAYER*****PI*11111", "LE*2120"]
    return out


def _d8(d: date) -> str:
    return d.strftime("%Y%m%d")


def answer_271(inquiries: list[Inquiry270], now: datetime) -> bytes:
    """The 271 interchange answering ``inquiries`` (one 270 file), from the fixtures."""
    first = inquiries[0]
    payer_id = first.payer_id
    payer_name = PAYERS.get(payer_id)
    ic = first.interchange_control or 1
    body = [f"BHT*0022*11*{first.trace_number[:30] or 'SIM'}*{_d8(now)}*{now.strftime('%H%M')}", "HL*1**20*1"]
    body.append(f"NM1*PR*2*{payer_name or first.payer_name or 'UNKNOWN'}*****PI*{payer_id}")
    if payer_name is None:
        body.append("AAA*N**79*C")
    elif payer_id in OFFLINE_PAYERS:
        body.append("AAA*Y**42*R")
    body += ["HL*2*1*21*1", f"NM1*1P*2*{first.provider_name}*****XX*{first.provider_npi}"]
    hl = 2
    if payer_name is not None and payer_id not in OFFLINE_PAYERS:
        for q in inquiries:
            body += _subscriber(q, hl + 1, now)
            hl += 2 if q.dependent is not None else 1
    st = ["ST*271*0001*005010X279A1", *body]
    st.append(f"SE*{len(st) + 1}*0001")
    segs = [
        "ISA*00*          *00*          *ZZ*"
        + f"{first.receiver_id[:15]:<15}*ZZ*{first.sender_id[:15]:<15}*{_d8(now)[2:]}*{now.strftime('%H%M')}"
        + f"*^*00501*{ic:09d}*0*{first.usage or 'P'}*:",
        f"GS*HB*{first.receiver_id}*{first.sender_id}*{_d8(now)}*{now.strftime('%H%M')}*{ic}*X*005010X279A1",
        *st,
        f"GE*1*{ic}",
        f"IEA*1*{ic:09d}",
    ]
    return ("~\n".join(segs) + "~\n").encode()


def _subscriber(q: Inquiry270, hl: int, now: datetime) -> list[str]:
    sub = q.subscriber
    scenario = scenario_of(sub.member_id)
    visit = date.fromisoformat(q.service_date) if q.service_date else now.date()
    st = q.service_types[0] if q.service_types else "30"
    trn = f"TRN*2*{q.trace_number}*{q.originator_id or '9SIMULATOR'}"
    dates = [f"DTP*346*D8*{visit.year}0101"]
    if scenario == "ENDED":
        dates.append(f"DTP*347*D8*{_d8(visit - timedelta(days=10))}")
    out = [f"HL*{hl}*2*22*{'1' if q.dependent is not None else '0'}"]
    if q.dependent is None:
        out.append(trn)
    out.append(f"NM1*IL*1*{sub.family_name}*{sub.given_name}****MI*{sub.member_id}")
    if scenario == "NOTFOUND":
        return [*out, "AAA*Y**75*C"]
    if scenario == "BADDOB":
        return [*out, "AAA*Y**71*C"]
    if sub.birth_date:
        out.append(f"DMG*D8*{sub.birth_date.replace('-', '')}" + (f"*{sub.sex}" if sub.sex else ""))
    if q.dependent is None:
        return out + dates + _benefits(scenario, st)
    dep = q.dependent
    out += [f"HL*{hl + 1}*{hl}*23*0", trn, f"NM1*03*1*{dep.family_name}*{dep.given_name}"]
    if dep.birth_date:
        out.append(f"DMG*D8*{dep.birth_date.replace('-', '')}" + (f"*{dep.sex}" if dep.sex else ""))
    return out + dates + _benefits(scenario, st)


@dataclass
class SimState:
    latency_ms: int = 0
    slow_ms: int = 30_000
    outage: bool = False
    fail_first: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    answered: int = 0


def _multipart(fields: dict[str, str]) -> MultipartWriter:
    mp = MultipartWriter("form-data")
    for k, v in fields.items():
        part = mp.append(v)
        part.set_content_disposition("form-data", name=k)
    return mp


def _text(v: Any) -> str:
    """A form field as text (a plain field, or a file part)."""
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "replace")
    data: bytes = v.file.read()
    return data.decode("utf-8", "replace")


async def _core(request: web.Request) -> web.StreamResponse:
    state: SimState = request.app["state"]
    form = await request.post()
    fields = {k: _text(v) for k, v in form.items()}
    state.received.append(
        {
            "payload_id": fields.get("PayloadID", ""),
            "at": time.time(),
            "payer_id": "",
            "member": "",
        }
    )
    if state.outage:
        return web.Response(status=503, text="clearinghouse unavailable (simulated outage)")
    if state.fail_first > 0:
        state.fail_first -= 1
        return web.Response(status=503, text="clearinghouse busy (simulated)")
    reply = {
        "ProcessingMode": "RealTime",
        "PayloadID": fields.get("PayloadID", ""),
        "TimeStamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "SenderID": fields.get("ReceiverID", ""),
        "ReceiverID": fields.get("SenderID", ""),
        "CORERuleVersion": fields.get("CORERuleVersion", "2.2.0"),
    }
    missing = [k for k in ("PayloadID", "SenderID", "ReceiverID", "TimeStamp", "CORERuleVersion") if not fields.get(k)]
    if fields.get("PayloadType") != REQUEST_PAYLOAD_TYPE:
        code, msg = "PayloadTypeNotSupported", f"PayloadType {fields.get('PayloadType')!r} is not supported"
    elif fields.get("ProcessingMode") != "RealTime":
        code, msg = "ProcessingModeNotSupported", "only RealTime is supported"
    elif missing:
        code, msg = f"{missing[0]}Required", f"{missing[0]} is required"
    else:
        code, msg = "Success", ""
    if code != "Success":
        return web.Response(
            body=_multipart({**reply, "PayloadType": "CoreEnvelopeError", "ErrorCode": code, "ErrorMessage": msg})
        )
    try:
        inquiries = read_270(fields.get("Payload", "").encode())
    except Rejected as exc:
        return web.Response(
            body=_multipart(
                {
                    **reply,
                    "PayloadType": "CoreEnvelopeError",
                    "ErrorCode": "PayloadInvalid",
                    "ErrorMessage": exc.reason,
                }
            )
        )
    member = inquiries[0].subscriber.member_id or ""
    state.received[-1].update(payer_id=inquiries[0].payer_id, member=scenario_of(member))
    delay = state.latency_ms + (state.slow_ms if scenario_of(member) == "SLOW" else 0)
    if delay:
        await asyncio.sleep(delay / 1000)
    payload = b"THIS IS NOT X12" if scenario_of(member) == "GARBAGE" else answer_271(inquiries, datetime.now(UTC))
    state.answered += 1
    return web.Response(
        body=_multipart(
            {
                **reply,
                "PayloadType": RESPONSE_PAYLOAD_TYPE,
                "ErrorCode": "Success",
                "ErrorMessage": "",
                "Payload": payload.decode(),
            }
        )
    )


async def _stats(request: web.Request) -> web.Response:
    state: SimState = request.app["state"]
    return web.json_response(
        {
            "received": state.received,
            "answered": state.answered,
            "latency_ms": state.latency_ms,
            "outage": state.outage,
            "fail_first": state.fail_first,
        }
    )


async def _config(request: web.Request) -> web.Response:
    state: SimState = request.app["state"]
    data = await request.json()
    for k in ("latency_ms", "slow_ms", "fail_first"):
        if k in data:
            setattr(state, k, int(data[k]))
    if "outage" in data:
        state.outage = bool(data["outage"])
    if data.get("reset"):
        state.received.clear()
        state.answered = 0
    return await _stats(request)


def _folder_scan(state: SimState, outbox: Path, inbox: Path) -> None:
    """Batch mode, one pass: answer every ``<outbox>/*.270`` with ``<inbox>/<same name>.271``."""
    sent = outbox / "sent"
    sent.mkdir(parents=True, exist_ok=True)
    inbox.mkdir(parents=True, exist_ok=True)
    for f in sorted(outbox.glob("*.270")):
        raw = f.read_bytes()
        state.received.append({"payload_id": f.stem, "at": time.time(), "payer_id": "", "member": ""})
        os.replace(f, sent / f.name)
        if state.outage:
            continue  # lost in the outage: the connector times out
        try:
            answer = answer_271(read_270(raw), datetime.now(UTC))
        except Rejected:
            continue
        tmp = inbox / f"{f.stem}.271.tmp"
        tmp.write_bytes(answer)
        os.replace(tmp, inbox / f"{f.stem}.271")
        state.answered += 1


async def _folder_worker(state: SimState, outbox: Path, inbox: Path) -> None:
    while True:
        await asyncio.to_thread(_folder_scan, state, outbox, inbox)
        await asyncio.sleep(0.1)


def make_app(state: SimState, outbox: Path | None = None, inbox: Path | None = None) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app["state"] = state
    app.router.add_post("/core/realtime", _core)
    app.router.add_get("/admin/stats", _stats)
    app.router.add_post("/admin/config", _config)
    if outbox is not None and inbox is not None:

        async def _start_folder(app: web.Application) -> Any:
            task = asyncio.create_task(_folder_worker(state, outbox, inbox))
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(_start_folder)
    return app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="practiceflow clearinghouse simulator (CORE real-time + folder)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8095)
    ap.add_argument("--latency-ms", type=int, default=0)
    ap.add_argument("--outage", action="store_true")
    ap.add_argument("--outbox", type=Path)
    ap.add_argument("--inbox", type=Path)
    args = ap.parse_args(argv)
    state = SimState(latency_ms=args.latency_ms, outage=args.outage)
    web.run_app(make_app(state, args.outbox, args.inbox), host=args.host, port=args.port, print=None)


class SimulatorProcess:
    """The simulator as a child process (the worker's embedded default, and the tests')."""

    def __init__(
        self,
        port: int,
        *,
        latency_ms: int = 0,
        outage: bool = False,
        outbox: Path | None = None,
        inbox: Path | None = None,
    ) -> None:
        self.port = port
        self.args = ["--port", str(port), "--latency-ms", str(latency_ms)]
        if outage:
            self.args.append("--outage")
        if outbox is not None and inbox is not None:
            self.args += ["--outbox", str(outbox), "--inbox", str(inbox)]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/core/realtime"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.port}/admin"

    def start(self, timeout: float = 30.0) -> SimulatorProcess:
        from practiceflow.localstack.ports import wait_for_port

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "practiceflow.localstack.clearinghouse", *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if not wait_for_port("127.0.0.1", self.port, time.monotonic() + timeout, self.proc):
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr and self.proc.poll() else ""
            self.stop()
            raise RuntimeError(f"clearinghouse simulator did not start on port {self.port}: {err[-500:]}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change latency/outage/fail_first on the running simulator (``reset=True`` clears stats)."""
        import httpx

        r = httpx.post(f"{self.admin}/config", json=changes, timeout=10)
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def stats(self) -> dict[str, Any]:
        import httpx

        r = httpx.get(f"{self.admin}/stats", timeout=10)
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    main()
