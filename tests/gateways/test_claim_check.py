"""Large inputs through the real broker: claim check, and "too large" as a permanent refusal.

The local broker keeps Kafka's default ``max.message.bytes`` (about 1 MiB). Before the
claim check, a 3 MiB fax got 503 "retry" forever (its original orphaned in the
document store), an ORU with a 2 MiB embedded PDF got AE "resend" forever (stalling
the sender's whole MLLP feed), and a large file in a drop folder blocked every later
file of that inbox.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random

import aiohttp
import pytest

from practiceflow.processors.fax import synth
from practiceflow.sampleday.senders import MllpClient, ack_code
from practiceflow.streams import runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.claimcheck import store_for
from practiceflow.streams.fax import FaxOcr
from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.gateways.folder import FolderDrop
from practiceflow.streams.gateways.http import HttpGateway
from practiceflow.streams.gateways.mllp import MllpGateway
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from tests.fixtures import oru_r01
from tests.streams.test_pipeline import consume_all

pytestmark = pytest.mark.broker
MiB = 1024 * 1024
P = "clinic-big"
TOKEN = "clinic-big-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def noise(n: int, seed: int) -> bytes:
    """Incompressible bytes (lz4 cannot shrink them under the broker's limit)."""
    return random.Random(seed).randbytes(n)


def oru_with_pdf(control_id: str, pdf_bytes: int, seed: int = 1) -> bytes:
    """An ORU^R01 whose OBX-5 carries a base64 PDF (ED), as reference labs send reports."""
    pdf = b"%PDF-1.4\n" + noise(pdf_bytes, seed)
    b64 = base64.b64encode(pdf).decode()
    base = oru_r01(control_id=control_id).decode().rstrip("\r")
    return (base + f"\rOBX|4|ED|PDF^Lab report^L||^application^pdf^Base64^{b64}||||||F\r").encode()


def big_fax_pdf(pages: int, seed: int, quality: int = 95) -> bytes:
    """A scanned-looking fax: one grayscale JPEG per page (what fax servers in photo mode send)."""
    import img2pdf

    doc = synth.render_document(seed, pages=pages)
    return img2pdf.convert([synth.to_jpeg(p, quality=quality) for p in doc.pages], nodate=True)


def document_reference(size: int) -> dict:
    data = base64.b64encode(b"%PDF-1.4\n" + noise(size, 9)).decode()
    return {
        "resourceType": "DocumentReference",
        "id": "dr-big-1",
        "status": "current",
        "subject": {"reference": "Patient/p-1"},
        "content": [{"attachment": {"contentType": "application/pdf", "data": data, "title": "Discharge summary"}}],
    }


async def _cores(cfg, stack, *, with_store: bool):
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    serde = AvroSerde(registry_client(stack.registry_url))
    store = store_for(cfg)
    core = GatewayCore(
        producer,
        serde,
        cfg.topic_prefix,
        name="big",
        docstore=store if with_store else None,
        claim_check_bytes=512 * 1024,
    )
    return producer, serde, store, core


def test_large_inputs_of_every_gateway_reach_their_records(cfg, stack, tmp_path):
    fax = big_fax_pdf(30, seed=21)
    assert len(fax) >= 5 * MiB, len(fax)
    oru = oru_with_pdf("BIG1", 4_800_000)
    assert len(oru) >= 6 * MiB, len(oru)
    fhir = json.dumps(document_reference(1_600_000)).encode()
    assert len(fhir) >= 2 * MiB
    dropped = big_fax_pdf(4, seed=22, quality=100)
    assert len(dropped) > MiB

    async def go():
        producer, serde, store, core = await _cores(cfg, stack, with_store=True)
        ocr = FaxOcr(tmp_path / "ocr", store=store, max_pages=2, timeout_s=300)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url, fax_handler=ocr)
        pipeline.register_schemas()
        await runner.start(pipeline)
        mllp = MllpGateway(core, P, port=0, max_message_bytes=16 * MiB)
        http = HttpGateway(core, {P}, store, tokens={P: TOKEN}, port=0, max_body_bytes=16 * MiB)
        drops = FolderDrop(core, tmp_path / "drop", {P}, store, settle_seconds=0, interval=0.2)
        await mllp.start()
        await http.start()
        inbox = drops.inbox(P, "fax")
        (inbox / "a_big.pdf").write_bytes(dropped)
        (inbox / "b_small.pdf").write_bytes(synth.to_image_pdf(synth.render_document(23, pages=1)))
        out: dict = {}
        try:
            async with MllpClient("127.0.0.1", mllp.port) as client:
                out["ack"] = ack_code(await client.send(oru))
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{http.port}", headers=AUTH) as s:
                async with s.post(f"/fax/{P}", data=fax, headers={"X-Fax-From": "+15550100"}) as r:
                    out["fax"] = (r.status, await r.json())
                async with s.post(f"/fhir/{P}", data=fhir, headers={"Content-Type": "application/fhir+json"}) as r:
                    out["fhir"] = r.status
            out["scanned"] = await drops.scan_once()
            out["done"] = sorted(p.name for p in (inbox.parent / "done").iterdir())
            ok = await runner.wait_for(
                lambda: (
                    pipeline.counts.get("fax.normalized", 0) >= 3
                    and pipeline.counts.get("hl7v2.normalized", 0) >= 1
                    and pipeline.counts.get("fhir.normalized", 0) >= 1
                ),
                600,
            )
            out["counts"] = dict(pipeline.counts)
            assert ok, pipeline.counts
        finally:
            await mllp.stop()
            await http.stop()
            await runner.stop(pipeline)
            producer.close()
        return out, serde, store

    out, serde, store = asyncio.run(go())
    assert out["ack"] == "AA" and out["fax"][0] == 202 and out["fhir"] == 202
    assert out["scanned"] == 2 and out["done"] == ["a_big.pdf", "b_small.pdf"]
    assert not any(k.endswith(".dead_lettered") for k in out["counts"]), out["counts"]

    # the raw topics carry references, not the bytes
    raws = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.raw.hl7v2", serde, 1)]
    assert raws[0]["payload"] == b"" and raws[0]["payload_size"] == len(oru)
    assert store.get(raws[0]["payload_uri"], P) == oru and f"/{P}/" in raws[0]["payload_uri"]
    fax_raws = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.raw.fax", serde, 3)]
    assert sorted(r["payload_size"] or 0 for r in fax_raws)[-2:] == sorted([len(dropped), len(fax)])
    # the HTTP fax's original was stored once: its reference is the gateway's storage_uri
    big = next(r for r in fax_raws if r["payload_size"] == len(fax))
    assert big["payload_uri"] == out["fax"][1]["storage_uri"] == big["headers"]["storage_uri"]

    obs = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.observation", serde, 4)]
    assert len(obs) == 4 and any("[ED application/pdf Base64" in (o.get("value") or "") for o in obs)
    docs = {v["sha256"]: v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.document", serde, 4)}
    fax_doc = docs[big["payload_sha256"]]
    assert fax_doc["page_count"] == 30 and len(fax_doc["pages"]) == 30
    assert fax_doc["ocr_status"] == "partial_page_limit"
    assert [p["ocr"] for p in fax_doc["pages"]] == [True, True] + [False] * 28
    assert fax_doc["pages"][0]["text"].strip() and not fax_doc["pages"][29]["text"]
    searchable = store.get(fax_doc["searchable_pdf_uri"], P)  # kept beside the original, hash-checked
    assert searchable.startswith(b"%PDF") and fax_doc["storage_uri"] == big["payload_uri"]
    assert any(d["kind"] != "fax" and d["title"] == "Discharge summary" for d in docs.values())


def test_too_large_for_the_broker_is_a_permanent_refusal_never_a_retry(cfg, stack, tmp_path):
    """Without a document store (claim check off) the broker refuses big records: the sender
    must get a refusal it will not resend (AR / 413), a dead letter that fits, and a dropped
    file must move aside instead of blocking the files after it."""
    oru = oru_with_pdf("HUGE1", 2 * MiB)
    fhir = json.dumps(document_reference(2 * MiB)).encode()
    x12_big = b"ISA*" + noise(2 * MiB, 5)  # refused by the normalizer: its dead letter must still fit

    async def go():
        producer, serde, store, core = await _cores(cfg, stack, with_store=False)
        mllp = MllpGateway(core, P, port=0, max_message_bytes=16 * MiB)
        http = HttpGateway(core, {P}, store, tokens={P: TOKEN}, port=0, max_body_bytes=16 * MiB)
        drops = FolderDrop(core, tmp_path / "drop", {P}, store, settle_seconds=0)
        await mllp.start()
        await http.start()
        inbox = drops.inbox(P, "fax")
        (inbox / "a_big.pdf").write_bytes(b"%PDF-1.4\n" + noise(2 * MiB, 6))
        (inbox / "b_small.pdf").write_bytes(synth.to_image_pdf(synth.render_document(24, pages=1)))
        out: dict = {}
        try:
            async with MllpClient("127.0.0.1", mllp.port) as client:
                out["acks"] = [ack_code(await client.send(oru)), ack_code(await client.send(oru_r01("NEXT1")))]
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{http.port}", headers=AUTH) as s:
                async with s.post(f"/fhir/{P}", data=fhir, headers={"Content-Type": "application/fhir+json"}) as r:
                    out["fhir"] = (r.status, await r.json())
                async with s.post(f"/x12/{P}", data=x12_big) as r:
                    out["x12"] = r.status
            out["scanned"] = await drops.scan_once()
            out["done"] = sorted(p.name for p in (inbox.parent / "done").iterdir())
            out["rejected"] = sorted(p.name for p in (inbox.parent / "rejected").iterdir())
            out["inbox"] = sorted(p.name for p in inbox.iterdir())
        finally:
            await mllp.stop()
            await http.stop()
            producer.close()
        return out, serde

    out, serde = asyncio.run(go())
    assert out["acks"] == ["AR", "AA"]  # not AE: an MLLP sender would resend AE forever
    assert out["fhir"][0] == 413 and out["fhir"][1]["reason_code"] == "too_large"
    assert out["x12"] == 422
    assert out["scanned"] == 2 and out["done"] == ["b_small.pdf"] and out["rejected"] == ["a_big.pdf"]
    assert out["inbox"] == []
    for feed, n in (("hl7v2", 1), ("fhir", 1), ("fax", 1), ("x12", 1)):
        letters = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.dlq.{feed}", serde, n)]
        assert len(letters) == n, feed
        for dl in letters:
            assert 0 < len(dl["payload"]) <= 512 * 1024, feed  # a head that fits the topic
            assert dl["details"]["head_only"] == "true" and int(dl["details"]["original_bytes"]) > MiB
    hl7_dl = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.dlq.hl7v2", serde, 1)[0][1]
    assert hl7_dl["reason_code"] == "too_large" and "refused by the broker" in hl7_dl["reason"]


def test_oversize_mllp_frame_is_dead_lettered_with_a_head_that_fits(cfg, stack, tmp_path):
    """Before: the dead letter kept max_message_bytes of the frame and then failed to be written."""
    oru = oru_with_pdf("OVER1", 3 * MiB)

    async def go():
        producer, serde, _store, core = await _cores(cfg, stack, with_store=True)
        mllp = MllpGateway(core, P, port=0, max_message_bytes=2 * MiB)
        await mllp.start()
        try:
            async with MllpClient("127.0.0.1", mllp.port) as client:
                acks = [ack_code(await client.send(oru)), ack_code(await client.send(oru_r01("AFTER2")))]
        finally:
            await mllp.stop()
            producer.close()
        return acks, serde

    acks, serde = asyncio.run(go())
    assert acks == ["AR", "AA"]
    letters = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.dlq.hl7v2", serde, 1)]
    assert len(letters) == 1 and letters[0]["reason_code"] == "too_large"
    assert letters[0]["payload"].lstrip(b"\x0b").startswith(b"MSH|") and len(letters[0]["payload"]) <= 512 * 1024


def test_rejected_large_input_keeps_its_whole_original_in_the_store(cfg, stack, tmp_path):
    """A large input the validator refuses: head in the dead letter, the whole original referenced."""
    body = json.dumps({"resourceType": "Observation", "status": "bogus", "note": [{"text": "A" * (2 * MiB)}]}).encode()

    async def go():
        producer, serde, store, core = await _cores(cfg, stack, with_store=True)
        http = HttpGateway(core, {P}, store, tokens={P: TOKEN}, port=0, max_body_bytes=16 * MiB)
        await http.start()
        try:
            async with (
                aiohttp.ClientSession(base_url=f"http://127.0.0.1:{http.port}", headers=AUTH) as s,
                s.post(f"/fhir/{P}", data=body, headers={"Content-Type": "application/fhir+json"}) as r,
            ):
                status = r.status
        finally:
            await http.stop()
            producer.close()
        return status, serde, store

    status, serde, store = asyncio.run(go())
    assert status == 422
    dl = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.dlq.fhir", serde, 1)[0][1]
    assert len(dl["payload"]) <= 512 * 1024 and body.startswith(dl["payload"])
    assert dl["payload_size"] == len(body) and store.get(dl["payload_uri"], P) == body
