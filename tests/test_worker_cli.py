"""The worker AS SHIPPED: ``practiceflow worker`` and ``practiceflow gateways`` as subprocesses.

Earlier the production command built the pipeline without an OCR handler, so every
fax became a ``fax_disabled`` dead letter while the tests (which build the pipeline
themselves) passed. This test starts the two CLI commands exactly as an operator
does, configured only through ``PRACTICEFLOW_*`` variables, against the test broker,
sends one input of every feed through the real gateways, and waits for each one's
normalized records on the normalized topics.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import pytest
from confluent_kafka import Consumer

from practiceflow.sampleday.generate import build_day
from practiceflow.sampleday.senders import MllpClient, ack_code, sign_portal
from practiceflow.streams import catalog
from practiceflow.streams.serde import AvroSerde, registry_client
from tests.fixtures import closed_port, oru_r01
from tests.streams.test_pipeline import consume_all

pytestmark = pytest.mark.broker

PRACTICE = "clinic-w"
SECRET = "cli-secret"
TOKEN = "cli-token"
PATIENT = {"resourceType": "Patient", "id": "w-1", "name": [{"family": "Okafor", "given": ["Ada"]}]}
REFILL = {
    "request_id": "rfl_cli_1",
    "submitted_at": "2026-11-27T07:30:00Z",
    "patient_id": "MRN1",
    "medication": {"name": "lisinopril 10 mg tablet"},
}


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready in {timeout}s:\n{log.read_text()[-4000:]}")


def _first_matching(bootstrap: str, topic: str, serde: AvroSerde, check, timeout: float) -> dict | None:
    """The first record on ``topic`` that ``check`` accepts, waiting up to ``timeout`` seconds."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            value = serde.decode(msg.value())
            if check(value):
                return value
    finally:
        c.close()
    return None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_shipped_worker_and_gateways_normalize_every_feed(stack, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:6]}"
    ports = {"web": closed_port(), "mllp": closed_port(), "http": closed_port()}
    env = {
        **os.environ,
        "PRACTICEFLOW_CONFIG": str(tmp_path / "none.toml"),
        "PRACTICEFLOW_KAFKA_BOOTSTRAP": stack.bootstrap,
        "PRACTICEFLOW_SCHEMA_REGISTRY_URL": stack.registry_url,
        "PRACTICEFLOW_STATE_DIR": str(tmp_path / "state"),
        "PRACTICEFLOW_TOPIC_PREFIX": prefix,
        "PRACTICEFLOW_CONSUMER_GROUP": f"cli-{uuid.uuid4().hex[:8]}",
        "PRACTICEFLOW_WEB_PORT": str(ports["web"]),
        "PRACTICEFLOW_MLLP_PORT": str(ports["mllp"]),
        "PRACTICEFLOW_HTTP_PORT": str(ports["http"]),
        "PRACTICEFLOW_PRACTICES": json.dumps([PRACTICE]),
        "PRACTICEFLOW_DEFAULT_PRACTICE_ID": PRACTICE,
        "PRACTICEFLOW_PORTAL_SECRETS": json.dumps({PRACTICE: SECRET}),
        "PRACTICEFLOW_GATEWAY_TOKENS": json.dumps({PRACTICE: TOKEN}),
    }
    logs = {name: tmp_path / f"{name}.log" for name in ("gateways", "worker")}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name in ("gateways", "worker"):  # the gateways create the topics first
            with open(logs[name], "wb") as out:
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "practiceflow.cli", name],
                    env=env,
                    cwd=tmp_path,  # Faust writes its data directory into the working directory
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            if name == "gateways":
                _wait_http(f"http://127.0.0.1:{ports['http']}/healthz", 90, procs[name], logs[name])
        _wait_http(f"http://127.0.0.1:{ports['web']}/readyz", 120, procs["worker"], logs["worker"])

        plan = build_day(seed=3, n_patients=8, practice_id=PRACTICE)
        era = next(body for name, body in plan.x12_upload if name.endswith(".835"))
        fax_name, fax, fax_meta = plan.fax_upload[0]

        async def send() -> dict[str, object]:
            out: dict[str, object] = {}
            async with MllpClient("127.0.0.1", ports["mllp"]) as client:
                out["hl7v2"] = ack_code(await client.send(oru_r01(control_id="CLI1")))
            async with aiohttp.ClientSession(
                base_url=f"http://127.0.0.1:{ports['http']}", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as http:
                async with http.post(f"/fhir/{PRACTICE}", json=PATIENT) as r:
                    out["fhir"] = r.status
                body = json.dumps(REFILL).encode()
                headers = sign_portal(SECRET.encode(), body, "refill.requested")
                async with http.post(f"/portal/{PRACTICE}", data=body, headers=headers) as r:
                    out["portal"] = r.status
                async with http.post(f"/x12/{PRACTICE}", data=era) as r:
                    out["x12"] = r.status
                form = aiohttp.FormData()
                form.add_field("file", fax, filename=fax_name, content_type="image/tiff")
                for k, v in fax_meta.items():
                    form.add_field(k, v)
                async with http.post(f"/fax/{PRACTICE}", data=form) as r:
                    out["fax"] = r.status
            return out

        answers = asyncio.run(send())
        assert answers == {"hl7v2": "AA", "fhir": 202, "portal": 202, "x12": 202, "fax": 202}

        serde = AvroSerde(registry_client(stack.registry_url))
        expected = {  # record type -> what one of them must show
            "Observation": lambda v: v["code"]["code"] == "2345-7",
            "Patient": lambda v: v["family_name"] == "Okafor",
            "RefillRequest": lambda v: "lisinopril" in json.dumps(v),
            "ClaimAdjudication": lambda v: True,
            "Document": lambda v: v["kind"] == "fax" and v["page_count"] == 1 and bool(v["text"].strip()),
        }
        for record_type, check in expected.items():
            topic = f"{prefix}.{catalog.NORMALIZED[record_type]}"
            found = _first_matching(stack.bootstrap, topic, serde, check, timeout=180)
            assert found, f"no matching {record_type} on {topic}:\n{logs['worker'].read_text()[-4000:]}"
            assert found["practice_id"] == PRACTICE
            if record_type == "Document":
                assert found["ocr_status"] == "complete"
        assert not consume_all(stack.bootstrap, f"{prefix}.dlq.fax", serde, 1, timeout=3)  # no fax_disabled
    finally:
        for proc in procs.values():
            _stop(proc)
