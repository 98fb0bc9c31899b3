"""HTTP gateway (FHIR, portal, fax, X12) and folder drops against the real broker."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from practiceflow.sampleday.senders import sign_portal
from practiceflow.sinks.docstore import DocumentStore, LocalDocumentStore, S3DocumentStore
from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.gateways.folder import FolderDrop
from practiceflow.streams.gateways.http import HttpGateway
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from tests.fixtures import closed_port, oru_r01
from tests.streams.test_pipeline import consume_all

pytestmark = pytest.mark.broker
SECRET = "s3cret"
TOKEN = "clinic-h-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FHIR_JSON = {**AUTH, "Content-Type": "application/fhir+json"}

PATIENT = {
    "resourceType": "Patient",
    "id": "p-77",
    "name": [{"family": "Lindqvist", "given": ["Rowan"]}],
    "birthDate": "1970-04-02",
}
REFILL = {
    "request_id": "rfl_1",
    "submitted_at": "2026-11-27T07:30:00Z",
    "patient_id": "MRN1",
    "medication": {"name": "lisinopril 10 mg tablet"},
}


async def _with_gateway(cfg, stack, tmp_path, fn, store: DocumentStore | None = None):
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    core = GatewayCore(producer, AvroSerde(registry_client(stack.registry_url)), cfg.topic_prefix, name="t")
    store = store or LocalDocumentStore((tmp_path / "docs").as_uri())
    gw = HttpGateway(
        core,
        {"clinic-h"},
        store,
        tokens={"clinic-h": TOKEN},
        portal_secrets={"clinic-h": SECRET},
        port=0,
        max_body_bytes=64 * 1024,
    )
    await gw.start()
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{gw.port}") as http:
            return await fn(http, core, store)
    finally:
        await gw.stop()
        producer.close()


def test_fhir_portal_fax_and_x12_over_http(cfg, stack, tmp_path):
    async def go(http, core, store):
        out = {}
        async with http.post("/fhir/clinic-h", json=PATIENT, headers=AUTH) as r:
            out["fhir_ok"] = (r.status, await r.json())
        bogus = b'{"resourceType": "Observation", "status": "bogus"}'
        async with http.post("/fhir/clinic-h", data=bogus, headers=FHIR_JSON) as r:
            out["fhir_bad"] = r.status
        async with http.post("/fhir/nobody", json=PATIENT, headers=AUTH) as r:
            out["tenant"] = r.status
        body = json.dumps(REFILL).encode()
        async with http.post(
            "/portal/clinic-h", data=body, headers=sign_portal(SECRET.encode(), body, "refill.requested")
        ) as r:
            out["portal_ok"] = r.status
        async with http.post(
            "/portal/clinic-h", data=body, headers=sign_portal(SECRET.encode(), body, "refill.requested")
        ) as r:
            out["portal_replay"] = (r.status, await r.json())
        async with http.post(
            "/portal/clinic-h", data=body, headers=sign_portal(b"wrong", body, "refill.requested")
        ) as r:
            out["portal_forged"] = r.status
        old = sign_portal(SECRET.encode(), body, "refill.requested", ts=time.time() - 3600)
        async with http.post("/portal/clinic-h", data=body, headers=old) as r:
            out["portal_stale"] = (r.status, (await r.json())["reason_code"])
        pdf = b"%PDF-1.4 tiny test document"
        async with http.post("/fax/clinic-h", data=pdf, headers={**AUTH, "X-Fax-From": "+15550100"}) as r:
            out["fax"] = (r.status, await r.json())
        async with http.post("/fax/clinic-h", data=b"GIF89a not a fax", headers=AUTH) as r:
            out["fax_bad"] = r.status
        async with http.post("/x12/clinic-h", data=b"ISA*garbage~", headers=AUTH) as r:
            out["x12_bad"] = r.status
        async with http.post("/fhir/clinic-h", data=b"x" * (128 * 1024), headers=FHIR_JSON) as r:
            out["too_large"] = r.status
        out["stats"] = dict(core.stats)
        out["stored"] = store.get(out["fax"][1]["storage_uri"], "clinic-h")
        return out

    out = asyncio.run(_with_gateway(cfg, stack, tmp_path, go))
    assert out["fhir_ok"][0] == 202 and out["fhir_ok"][1]["resourceType"] == "OperationOutcome"
    assert out["fhir_bad"] == 422 and out["tenant"] == 404
    assert out["portal_ok"] == 202
    assert out["portal_replay"] == (
        200,
        {"accepted": True, "duplicate": True, "message_id": out["portal_replay"][1]["message_id"]},
    )
    assert out["portal_forged"] == 401 and out["portal_stale"] == (401, "stale_timestamp")
    assert out["fax"][0] == 202 and out["stored"] == b"%PDF-1.4 tiny test document"
    assert out["fax_bad"] == 415 and out["x12_bad"] == 422 and out["too_large"] == 413
    assert out["stats"]["portal.accepted"] == 1  # the replay was not written again
    serde = AvroSerde(registry_client(stack.registry_url))
    letters = {v["reason_code"] for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.dlq.portal", serde, 2)}
    assert letters == {"bad_signature", "stale_timestamp"}
    fhir_letters = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.dlq.fhir", serde, 3)  # invalid, unknown, big
    assert {v["reason_code"] for _, v in fhir_letters} == {"invalid_resource", "unknown_practice", "too_large"}
    too_big = [v for _, v in fhir_letters if v["reason_code"] == "too_large"]
    assert too_big and too_big[0]["payload"].startswith(b"x")


def test_folder_drop_splits_batches_and_sorts_files(cfg, stack, tmp_path):
    async def go():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        core = GatewayCore(producer, AvroSerde(registry_client(stack.registry_url)), cfg.topic_prefix, name="drop")
        drops = FolderDrop(
            core, tmp_path / "drop", {"clinic-f"}, LocalDocumentStore((tmp_path / "docs").as_uri()), settle_seconds=0
        )
        batch = (
            b"FHS|^~\\&|LAB\rBHS|^~\\&|LAB\r" + oru_r01(control_id="B1") + oru_r01(control_id="B2") + b"BTS|2\rFTS|1\r"
        )
        (drops.inbox("clinic-f", "hl7v2") / "batch.hl7").write_bytes(batch)
        (drops.inbox("clinic-f", "fax") / "note.txt").write_bytes(b"plain text")
        (drops.inbox("clinic-f", "fax") / "scan.pdf").write_bytes(b"%PDF-1.4 a scan")
        try:
            handled = await drops.scan_once()
        finally:
            producer.close()
        return handled, core.stats, drops

    handled, stats, _drops = asyncio.run(go())
    assert handled == 3
    assert stats["hl7v2.accepted"] == 2 and stats["fax.accepted"] == 1 and stats["fax.rejected"] == 1
    root = tmp_path / "drop" / "clinic-f"
    assert (root / "hl7v2" / "done" / "batch.hl7").exists()
    assert (root / "fax" / "rejected" / "note.txt").exists() and (root / "fax" / "done" / "scan.pdf").exists()
    assert not any((root / "hl7v2" / "inbox").iterdir())


def _unreachable_s3() -> S3DocumentStore:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    return S3DocumentStore("s3://pf-docs-down", client=client)


def test_fax_upload_into_s3_and_retry_later_when_the_store_is_down(cfg, stack, tmp_path, s3_endpoint, s3_bucket):
    pdf = b"%PDF-1.4 a referral fax stored in S3"

    async def upload(http, core, store):
        async with http.post("/fax/clinic-h", data=pdf, headers={**AUTH, "X-Fax-From": "+15550100"}) as r:
            return r.status, await r.json(), r.headers.get("Retry-After"), dict(core.stats)

    s3 = S3DocumentStore(f"s3://{s3_bucket}/faxes", endpoint_url=s3_endpoint)
    status, body, _, stats = asyncio.run(_with_gateway(cfg, stack, tmp_path, upload, s3))
    assert status == 202 and body["storage_uri"].startswith(f"s3://{s3_bucket}/faxes/clinic-h/")
    assert s3.get(body["storage_uri"], "clinic-h") == pdf and stats["fax.accepted"] == 1

    async def upload_text(http, core, store):
        async with http.post("/fax/clinic-h", data=pdf, headers=AUTH) as r:
            return r.status, await r.text(), r.headers.get("Retry-After"), dict(core.stats)

    status, text, retry, stats = asyncio.run(_with_gateway(cfg, stack, tmp_path, upload_text, _unreachable_s3()))
    assert status == 503 and retry == "5" and "document store" in text
    assert "fax.accepted" not in stats  # nothing written to Kafka, so nothing half-done

    async def drop():
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        core = GatewayCore(producer, AvroSerde(registry_client(stack.registry_url)), cfg.topic_prefix, name="d")
        drops = FolderDrop(core, tmp_path / "drop", {"clinic-f"}, _unreachable_s3(), settle_seconds=0)
        (drops.inbox("clinic-f", "fax") / "scan.pdf").write_bytes(pdf)
        try:
            return await drops.scan_once(), drops
        finally:
            producer.close()

    handled, drops = asyncio.run(drop())
    assert handled == 0 and (drops.inbox("clinic-f", "fax") / "scan.pdf").exists()  # retried on the next scan
