"""Bounded under hostile input: MLLP timeouts, connection limits and read budget; HTTP bodies
counted before they are read; webhook replay protection per feed and practice, across a
restart; folder drops that do not follow symlinks or read oversize files.

All on loopback, with bounded loops; the gateway writes are recorded (tests/gateways/recording.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path

import aiohttp

from practiceflow.sampleday.senders import MllpClient, ack_code, sign_portal
from practiceflow.sinks.docstore import LocalDocumentStore
from practiceflow.streams.gateways.folder import FolderDrop
from practiceflow.streams.gateways.http import HttpGateway
from practiceflow.streams.gateways.limits import ByteBudget
from practiceflow.streams.gateways.mllp import MllpGateway
from practiceflow.streams.gateways.replay import ReplayGuard
from tests.fixtures import oru_r01
from tests.gateways.recording import recording_core, written

VT = b"\x0b"


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closed this connection (EOF) within ``within`` seconds."""
    try:
        return await asyncio.wait_for(reader.read(), within) == b"" or True
    except (TimeoutError, ConnectionError):
        return False


# ---------------------------------------------------------------------------------------- MLLP
def test_mllp_idle_and_slowloris_connections_are_closed_and_the_frame_dead_lettered():
    async def go():
        core, producer, serde = recording_core()
        gw = MllpGateway(core, "clinic-x", port=0, idle_timeout_s=0.5, frame_timeout_s=1.0)
        await gw.start()
        try:
            idle = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(5)]
            slow = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(5)]

            async def drip(writer: asyncio.StreamWriter) -> None:  # a byte at a time, never <FS><CR>
                try:
                    for b in VT + b"MSH|^~\\&|SLOW|LORIS" * 10:
                        writer.write(bytes([b]))
                        await writer.drain()
                        await asyncio.sleep(0.1)
                except ConnectionError:
                    return

            drips = [asyncio.create_task(drip(w)) for _, w in slow]
            idle_closed = await asyncio.gather(*(_closed_by_server(r, 10) for r, _ in idle))
            slow_closed = await asyncio.gather(*(_closed_by_server(r, 10) for r, _ in slow))
            for t in drips:
                t.cancel()
            async with MllpClient("127.0.0.1", gw.port) as c:  # the listener still serves
                ack = await c.send(oru_r01(control_id="AFTER"))
        finally:
            await gw.stop()
        return idle_closed, slow_closed, ack, written(producer, serde, "dlq.hl7v2"), gw, core

    idle_closed, slow_closed, ack, letters, gw, core = asyncio.run(go())
    assert all(idle_closed) and all(slow_closed)
    assert ack_code(ack) == "AA"
    assert gw.stats["idle_closed"] >= 5 and gw.stats["frame_timeout"] == 5
    timed_out = [v for v in letters if v["reason_code"] == "mllp_frame_timeout"]
    assert len(timed_out) == 5 and all(v["payload"].startswith(b"MSH|^~") for v in timed_out)
    assert core.read_budget.used == 0 and gw.connections == 0


def test_mllp_connection_limits_per_peer_and_per_listener():
    async def go():
        core, _, _ = recording_core()
        gw = MllpGateway(core, "clinic-x", port=0, max_connections=6, max_connections_per_peer=3)
        await gw.start()
        try:
            conns = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(5)]
            closed = await asyncio.gather(*(_closed_by_server(r, 0.5) for r, _ in conns))
            per_peer = list(closed)
            for _, w in conns:
                w.close()
            await asyncio.sleep(0.2)
            gw.limits.per_peer = 100  # now the listener's cap decides
            conns = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(9)]
            per_listener = list(await asyncio.gather(*(_closed_by_server(r, 0.5) for r, _ in conns)))
            for _, w in conns:
                w.close()
        finally:
            await gw.stop()
        return per_peer, per_listener, gw

    per_peer, per_listener, gw = asyncio.run(go())
    assert per_peer.count(True) == 2 and per_listener.count(True) == 3
    assert gw.stats["refused_connection.peer"] == 2 and gw.stats["refused_connection.listener"] == 3


def test_mllp_unfinished_frames_are_held_within_the_read_budget():
    """30 connections each pushing an unterminated 2 MiB frame: buffered bytes stay under the budget."""

    async def go():
        core, _, _ = recording_core()
        core.read_budget = ByteBudget(4 * 1024 * 1024)
        gw = MllpGateway(
            core,
            "clinic-x",
            port=0,
            max_message_bytes=16 * 1024 * 1024,
            frame_timeout_s=3.0,
            max_connections_per_peer=64,
        )
        await gw.start()
        peak = 0

        async def push() -> None:
            s = socket.create_connection(("127.0.0.1", gw.port))
            s.setblocking(False)
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.sock_sendall(s, VT + b"MSH|" + b"x" * (2 * 1024 * 1024)), 8)
            except (TimeoutError, ConnectionError, OSError):
                pass  # the gateway stopped reading (budget spent) or closed us (frame timeout)
            finally:
                s.close()

        tasks = [asyncio.create_task(push()) for _ in range(30)]
        for _ in range(60):  # sample the budget while they push
            peak = max(peak, core.read_budget.used)
            await asyncio.sleep(0.1)
        await asyncio.gather(*tasks)
        for _ in range(50):
            if gw.connections == 0:
                break
            await asyncio.sleep(0.1)
        await gw.stop()
        return peak, core.read_budget.used, gw

    peak, left, gw = asyncio.run(go())
    assert 0 < peak <= 4 * 1024 * 1024
    assert left == 0 and gw.connections == 0


def test_mllp_oversize_frame_keeps_a_head_and_the_connection_goes_on():
    async def go():
        core, producer, serde = recording_core()
        gw = MllpGateway(core, "clinic-x", port=0, max_message_bytes=256 * 1024)
        await gw.start()
        try:
            async with MllpClient("127.0.0.1", gw.port) as c:
                nak = await c.send(oru_r01(control_id="BIG") + b"NTE|1||" + b"y" * (3 * 1024 * 1024) + b"\r")
                ok = await c.send(oru_r01(control_id="SMALL"))
        finally:
            await gw.stop()
        return nak, ok, written(producer, serde, "dlq.hl7v2"), core

    nak, ok, letters, core = asyncio.run(go())
    assert ack_code(nak) == "AR" and ack_code(ok) == "AA"
    (big,) = [v for v in letters if v["reason_code"] == "too_large"]
    assert big["payload"].startswith(b"MSH") and len(big["payload"]) <= 1024 * 1024
    assert core.read_budget.used == 0


# ---------------------------------------------------------------------------------------- HTTP
async def _raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    await writer.drain()
    return reader, writer


def _head(path: str, token: str, length: int | None) -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/edi-x12\r\n{size}\r\n"
    ).encode()


def test_http_bodies_are_counted_before_they_are_read():
    async def go():
        core, _, _ = recording_core()
        core.read_budget = ByteBudget(100_000)
        gw = HttpGateway(
            core,
            {"clinic-x"},
            LocalDocumentStore(Path(os.environ.get("TMPDIR", "/tmp")).joinpath("pf-docs-bounds").as_uri()),
            tokens={"clinic-x": "tok"},
            port=0,
            max_concurrent_bodies=3,
            body_timeout_s=1.0,
        )
        await gw.start()
        out = {}
        try:
            # a slow sender declares 90 kB and sends 10: the budget is charged for all 90 up front
            held = await _raw_request(gw.port, _head("/x12/clinic-x", "tok", 90_000), b"I" * 10_000)
            await asyncio.sleep(0.2)
            out["charged"] = core.read_budget.used
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{gw.port}") as http:
                auth = {"Authorization": "Bearer tok"}
                async with http.post("/x12/clinic-x", data=b"I" * 20_000, headers=auth) as r:
                    out["declared_over_budget"] = (r.status, r.headers.get("Retry-After"))

                async def chunked():
                    for _ in range(4):
                        yield b"I" * 8_000

                async with http.post("/x12/clinic-x", data=chunked(), headers=auth) as r:
                    out["chunked_over_budget"] = r.status
            out["timeout"] = (await asyncio.wait_for(held[0].readline(), 5)).strip()
            held[1].close()
            await asyncio.sleep(0.1)
            out["after"] = (core.read_budget.used, gw.bodies)
            # too many bodies at once: the fourth is refused before a byte of it is read
            slow = [await _raw_request(gw.port, _head("/x12/clinic-x", "tok", 100), b"I") for _ in range(3)]
            await asyncio.sleep(0.2)
            async with (
                aiohttp.ClientSession(base_url=f"http://127.0.0.1:{gw.port}") as http,
                http.post("/x12/clinic-x", data=b"I" * 10, headers={"Authorization": "Bearer tok"}) as r,
            ):
                out["fourth"] = r.status
            for _, w in slow:
                w.close()
        finally:
            await gw.stop()
        return out, core

    out, core = asyncio.run(go())
    assert out["charged"] == 90_000
    assert out["declared_over_budget"] == (503, "1")
    assert out["chunked_over_budget"] == 503
    assert out["timeout"] == b"HTTP/1.1 408 Request Timeout"
    assert out["after"] == (0, 0)
    assert out["fourth"] == 503
    assert core.stats["x12.rejected"] >= 1  # the timed-out body was dead-lettered (its head kept)


# ---------------------------------------------------------------------------------------- replay
REFILL = {
    "request_id": "rfl_replayed",
    "submitted_at": "2026-11-27T07:30:00Z",
    "patient_id": "MRN1",
    "medication": {"name": "lisinopril 10 mg tablet"},
}


def test_a_signed_webhook_is_not_accepted_twice_after_a_flood_or_a_restart(tmp_path):
    body = json.dumps(REFILL).encode()
    state = tmp_path / "replay.jsonl"

    async def gateway(core):
        gw = HttpGateway(
            core,
            {"clinic-x", "clinic-y"},
            LocalDocumentStore((tmp_path / "docs").as_uri()),
            portal_secrets={"clinic-x": "sx", "clinic-y": ["sy-old", "sy-new"]},
            replay=ReplayGuard(state),
            port=0,
        )
        await gw.start()
        return gw

    async def post(gw, practice, secret):
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{gw.port}/portal/{practice}"
            async with http.post(url, data=body, headers=sign_portal(secret, body, "refill.requested")) as r:
                return r.status, await r.json()

    async def go():
        core, producer, serde = recording_core()
        gw = await gateway(core)
        out = {"first": await post(gw, "clinic-x", b"sx")}
        for i in range(10_050):  # HL7 traffic through the same gateway core
            await core.accept("hl7v2", "clinic-x", b"MSH|^~\\&|", f"m{i}")
        out["after_flood"] = await post(gw, "clinic-x", b"sx")
        out["other_practice"] = await post(gw, "clinic-y", b"sy-new")  # same event id, its own tenant
        out["rotated_old_secret"] = await post(gw, "clinic-y", b"sy-old")
        await gw.stop()
        core2, producer2, serde2 = recording_core()
        gw2 = await gateway(core2)  # a restarted gateway
        out["after_restart"] = await post(gw2, "clinic-x", b"sx")
        await gw2.stop()
        out["raw"] = [v["practice_id"] for v in written(producer, serde, "raw.portal")]
        out["raw2"] = written(producer2, serde2, "raw.portal")
        return out

    out = asyncio.run(go())
    assert out["first"][0] == 202
    assert out["after_flood"] == (
        200,
        {"accepted": True, "duplicate": True, "message_id": "refill.requested/rfl_replayed"},
    )
    assert out["other_practice"][0] == 202 and out["rotated_old_secret"][0] == 200
    assert out["after_restart"][0] == 200 and out["after_restart"][1]["duplicate"] is True
    assert out["raw"] == ["clinic-x", "clinic-y"] and out["raw2"] == []
    assert b"rfl_replayed" not in state.read_bytes()  # ids kept as digests


def test_replay_ids_expire_with_their_signature_window(tmp_path):
    guard = ReplayGuard(tmp_path / "r.jsonl")
    now = time.time()
    guard.remember("portal", "p", "old", now - 1, now - 400)
    guard.remember("portal", "p", "live", now + 300, now)
    assert not guard.seen("portal", "p", "old", now) and guard.seen("portal", "p", "live", now)
    assert not guard.seen("portal", "q", "live", now) and not guard.seen("fhir", "p", "live", now)
    reloaded = ReplayGuard(tmp_path / "r.jsonl")
    assert reloaded.seen("portal", "p", "live", now) and len((tmp_path / "r.jsonl").read_text().splitlines()) == 1


# ---------------------------------------------------------------------------------------- folders
def test_folder_drop_refuses_symlinks_and_oversize_files_without_reading_them(tmp_path):
    secret = tmp_path / "outside" / "secret.hl7"
    secret.parent.mkdir()
    secret.write_bytes(oru_r01(control_id="OUTSIDE"))

    async def go():
        core, producer, serde = recording_core()
        drops = FolderDrop(
            core,
            tmp_path / "drop",
            {"clinic-a", "clinic-b"},
            LocalDocumentStore((tmp_path / "docs").as_uri()),
            settle_seconds=0,
            max_file_bytes=512 * 1024,
        )
        inbox_a = drops.inbox("clinic-a", "hl7v2")
        (inbox_a / "link.hl7").symlink_to(secret)
        (drops.inbox("clinic-b", "hl7v2") / "b.hl7").write_bytes(oru_r01(control_id="B-ONLY"))
        (inbox_a / "to-b.hl7").symlink_to(drops.inbox("clinic-b", "hl7v2") / "b.hl7")
        (inbox_a / "big.hl7").write_bytes(oru_r01(control_id="BIG") + b"NTE|1||" + b"z" * (2 * 1024 * 1024))
        (inbox_a / "ok.hl7").write_bytes(oru_r01(control_id="OK"))
        # clinic-b's x12 inbox replaced by a symlink to a folder outside the drop root
        xb = drops.inbox("clinic-b", "x12")
        xb.rmdir()
        (tmp_path / "outside" / "x12").mkdir()
        (tmp_path / "outside" / "x12" / "f.x12").write_bytes(b"ISA*00*...")
        xb.symlink_to(tmp_path / "outside" / "x12")
        handled = await drops.scan_once()
        return handled, written(producer, serde, "dlq.hl7v2"), written(producer, serde, "raw.hl7v2"), core

    handled, letters, raws, core = asyncio.run(go())
    reasons = sorted(v["reason_code"] for v in letters)
    assert reasons == ["too_large", "unsafe_file", "unsafe_file"]
    assert all(v["payload"] == b"" for v in letters if v["reason_code"] == "unsafe_file")
    (big,) = [v for v in letters if v["reason_code"] == "too_large"]
    # read only up to the limit, and the dead letter keeps a head that fits its topic (claim_check_bytes)
    assert len(big["payload"]) == core.claim_check_bytes and big["details"]["head_only"] == "true"
    into = sorted((v["practice_id"], b"|B-ONLY|" in v["payload"]) for v in raws)
    assert into == [("clinic-a", False), ("clinic-b", True)]  # OK into A, B-ONLY into B only, nothing else
    assert not any(b"OUTSIDE" in v["payload"] for v in raws)
    root = tmp_path / "drop" / "clinic-a" / "hl7v2" / "rejected"
    assert (root / "link.hl7").is_symlink() and (root / "to-b.hl7").is_symlink()  # the links moved, not their targets
    assert secret.exists() and (tmp_path / "outside" / "x12" / "f.x12").exists()  # the outside folder untouched
    assert core.stats["x12.unsafe_inbox"] == 1 and handled == 5


# ---------------------------------------------------------------------------------------- settings
def test_the_settings_wire_credentials_rotation_and_the_replay_file_into_the_http_gateway(tmp_path):
    from practiceflow.jobs.gateways import http_gateway
    from practiceflow.settings import Settings

    cfg = Settings(
        state_dir=tmp_path,
        practices=["clinic-s"],
        gateway_tokens={"clinic-s": ["old-token", "new-token"]},
        portal_secrets={"clinic-s": "ps"},
    )
    body = json.dumps({**REFILL, "request_id": "rfl_settings"}).encode()

    async def go():
        core, _, _ = recording_core()
        gw = http_gateway(cfg, core, LocalDocumentStore((tmp_path / "docs").as_uri()), port=0)
        gw.host = "127.0.0.1"
        await gw.start()
        out = []
        try:
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{gw.port}") as http:
                for token in ("old-token", "new-token", "ps"):
                    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/edi-x12"}
                    async with http.post("/x12/clinic-s", data=b"ISA*garbage~", headers=headers) as r:
                        out.append(r.status)
                sig = sign_portal(b"ps", body, "refill.requested")
                async with http.post("/portal/clinic-s", data=body, headers=sig) as r:
                    out.append(r.status)
        finally:
            await gw.stop()
        return out

    assert asyncio.run(go()) == [422, 422, 401, 202]  # both tokens authenticate; a portal secret is no token
    assert cfg.replay_state_file.exists()
