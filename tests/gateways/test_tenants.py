"""Tenants and authentication on every gateway, against the real broker.

Practice A's credential can neither write into practice B nor read B's documents; a
missing or wrong credential gets 401 (or an MLLP AR), another practice's gets 403, and
each refusal is a dead letter (stage gateway) that keeps no body, with an audit event,
and no body in the logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yarl

from practiceflow.jobs.gateways import mllp_gateway, tls_context
from practiceflow.processors.auth import UNKNOWN_PRACTICE, cert_fingerprint
from practiceflow.sampleday.senders import MllpClient, ack_code, sign_portal
from practiceflow.settings import Settings
from practiceflow.sinks.docstore import LocalDocumentStore
from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.gateways.http import HttpGateway
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from tests.fixtures import oru_r01
from tests.streams.test_pipeline import consume_all

pytestmark = pytest.mark.broker

A, B = "clinic-a", "clinic-b"
TOKENS = {A: ["a-current-token", "a-next-token"], B: ["b-token"]}
MARKER = "Zebulon-Quixote"  # a name that must never reach a log line
PATIENT = {"resourceType": "Patient", "id": "p-1", "name": [{"family": MARKER}], "birthDate": "1970-04-02"}
X12 = (
    "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *261127*0830*^*00501*000000123*0*P*:~"
    "GS*HB*SENDER*RECEIVER*20261127*0830*123*X*005010X279A1~ST*271*0001*005010X279A1~"
)


def _auth(practice: str, i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[practice][i]}"}


def test_every_http_feed_needs_the_practices_own_credential(cfg, stack, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fhir = {"Content-Type": "application/fhir+json"}
    pdf = f"%PDF-1.4 fax about {MARKER}".encode()
    patient = json.dumps(PATIENT).encode()

    async def go():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        core = GatewayCore(producer, AvroSerde(registry_client(stack.registry_url)), cfg.topic_prefix, name="ten")
        store = LocalDocumentStore((tmp_path / "docs").as_uri())
        gw = HttpGateway(core, {A, B}, store, tokens=TOKENS, portal_secrets={A: "pa", B: "pb"}, port=0)
        await gw.start()
        st: dict[str, object] = {}
        try:
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{gw.port}") as http:

                async def status(key: str, method: str, url: str, **kw) -> None:
                    async with http.request(method, url, **kw) as r:
                        st[key] = r.status
                        if r.content_type == "application/json":
                            st[key + ".body"] = await r.json()

                for feed, body, extra in (("fhir", patient, fhir), ("x12", X12.encode(), {}), ("fax", pdf, {})):
                    await status(f"{feed}.none", "POST", f"/{feed}/{B}", data=body, headers=extra)
                    await status(
                        f"{feed}.wrong",
                        "POST",
                        f"/{feed}/{B}",
                        data=body,
                        headers={**extra, "Authorization": "Bearer x"},
                    )
                    await status(
                        f"{feed}.basic",
                        "POST",
                        f"/{feed}/{B}",
                        data=body,
                        headers={**extra, "Authorization": "Basic eA=="},
                    )
                    await status(f"{feed}.a_into_b", "POST", f"/{feed}/{B}", data=body, headers={**extra, **_auth(A)})
                    await status(f"{feed}.a_current", "POST", f"/{feed}/{A}", data=body, headers={**extra, **_auth(A)})
                    await status(f"{feed}.a_next", "POST", f"/{feed}/{A}", data=body, headers={**extra, **_auth(A, 1)})
                # the portal authenticates with its HMAC: A's secret does not sign for B
                await status(
                    "portal.a_into_b",
                    "POST",
                    f"/portal/{B}",
                    data=b"{}",
                    headers=sign_portal(b"pa", b"{}", "refill.requested"),
                )
                # documents: A's fax is A's
                async with http.post(f"/fax/{A}", data=pdf, headers=_auth(A)) as r:
                    uri = (await r.json())["storage_uri"]
                await status("doc.a", "GET", f"/documents/{A}", params={"uri": uri}, headers=_auth(A))
                async with http.get(f"/documents/{A}", params={"uri": uri}, headers=_auth(A)) as r:
                    st["doc.a.bytes"] = await r.read()
                await status("doc.b_on_a_url", "GET", f"/documents/{A}", params={"uri": uri}, headers=_auth(B))
                await status("doc.b_own_url", "GET", f"/documents/{B}", params={"uri": uri}, headers=_auth(B))
                await status("doc.none", "GET", f"/documents/{A}", params={"uri": uri})
                # smaller gaps
                await status("unknown", "POST", "/fhir/nobody", data=patient, headers={**fhir, **_auth(A)})
                async with aiohttp.ClientSession() as raw:  # the encoded dots exactly as an attacker sends them
                    url = yarl.URL(f"http://127.0.0.1:{gw.port}/fhir/{A}/%2e%2e/%2e%2e/metrics", encoded=True)
                    async with raw.post(url, data=patient, headers={**fhir, **_auth(A)}) as r:
                        st["dots"] = r.status
                await status(
                    "plain", "POST", f"/fhir/{A}", data=patient, headers={"Content-Type": "text/plain", **_auth(A)}
                )
                xml = b'<Patient xmlns="http://hl7.org/fhir"><id value="x"/></Patient>'
                await status(
                    "xml", "POST", f"/fhir/{A}", data=xml, headers={"Content-Type": "application/fhir+xml", **_auth(A)}
                )
                await status(
                    "portal_plain",
                    "POST",
                    f"/portal/{A}",
                    data=b"{}",
                    headers={**sign_portal(b"pa", b"{}", "refill.requested"), "Content-Type": "text/plain"},
                )
        finally:
            await gw.stop()
            producer.close()
        return st

    st = asyncio.run(go())
    for feed in ("fhir", "x12", "fax"):
        assert (st[f"{feed}.none"], st[f"{feed}.wrong"], st[f"{feed}.basic"]) == (401, 401, 401), feed
        assert st[f"{feed}.a_into_b"] == 403, feed
        assert st[f"{feed}.a_current"] in (202, 422) and st[f"{feed}.a_next"] in (200, 202, 422), feed
    assert st["fhir.a_current"] == 202 and st["fax.a_current"] == 202  # both rotation secrets work
    assert st["portal.a_into_b"] == 401
    assert st["doc.a"] == 200 and st["doc.a.bytes"] == pdf
    assert (st["doc.b_on_a_url"], st["doc.b_own_url"], st["doc.none"]) == (403, 403, 401)
    assert st["unknown"] == 404 and st["dots"] == 400
    assert st["plain"] == 415 and st["xml"] == 415 and st["portal_plain"] == 415
    assert st["xml.body"]["resourceType"] == "OperationOutcome"

    serde = AvroSerde(registry_client(stack.registry_url))
    p = cfg.topic_prefix
    raw_practices = {
        v["practice_id"]
        for f in ("fhir", "x12", "fax")
        for _, v in consume_all(stack.bootstrap, f"{p}.raw.{f}", serde, 99, 3)
    }
    assert raw_practices == {A}  # nothing A sent landed in B
    letters = [
        v
        for f in ("fhir", "x12", "fax", "portal")
        for _, v in consume_all(stack.bootstrap, f"{p}.dlq.{f}", serde, 99, 3)
    ]
    refused = [
        v for v in letters if v["reason_code"] in ("unauthenticated", "forbidden", "unknown_practice", "bad_path")
    ]
    assert {(v["feed"], v["reason_code"], v["practice_id"]) for v in refused} >= {
        ("fhir", "unauthenticated", B),
        ("x12", "unauthenticated", B),
        ("fax", "unauthenticated", B),
        ("fhir", "forbidden", A),  # dead-lettered under the caller's own practice, target noted
        ("fax", "forbidden", B),  # B's caller asking for A's document
        ("fhir", "unknown_practice", UNKNOWN_PRACTICE),
    }
    assert all(v["payload"] == b"" and v["stage"] == "gateway" for v in refused)
    assert any(v["details"].get("target_practice") == B for v in refused if v["reason_code"] == "forbidden")
    media = [v for v in letters if v["reason_code"] == "unsupported_media_type"]
    assert len(media) == 3 and any(v["payload"].startswith(b"<Patient") for v in media)  # the sender's XML kept
    assert {v["practice_id"] for v in letters if v["reason_code"] == "bad_signature"} == {B}
    audit = [v for _, v in consume_all(stack.bootstrap, f"{p}.audit.in", serde, 999, 3)]
    assert sum(1 for v in audit if v["action"] == "rejected" and v["reason"] == "unauthenticated") >= 6
    assert any(v["action"] == "read" for v in audit)
    assert MARKER not in caplog.text and "a-current-token" not in caplog.text


# ---------------------------------------------------------------------------------------- MLLP mTLS
def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        f"/CN={name}",
        "-keyout",
        str(key),
        "-out",
        str(cert),
    )
    return cert, key


def _issue(d: Path, ca: tuple[Path, Path], cn: str, san: str = "DNS:localhost") -> tuple[Path, Path]:
    key, csr, cert, ext = d / f"{cn}.key", d / f"{cn}.csr", d / f"{cn}.pem", d / f"{cn}.ext"
    ext.write_text(f"subjectAltName={san}\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(csr))
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-days", "1", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def _der_fingerprint(cert: Path) -> str:
    return cert_fingerprint(ssl.PEM_cert_to_DER_cert(cert.read_text()))


def test_mllp_mutual_tls_maps_the_client_certificate_to_its_practice(cfg, stack, tmp_path):
    ca = _ca(tmp_path, "practice-ca")
    rogue = _ca(tmp_path, "rogue-ca")
    server = _issue(tmp_path, ca, "gateway")
    ehr_a = _issue(tmp_path, ca, "ehr-a")
    ehr_b = _issue(tmp_path, ca, "ehr-b", san="DNS:ehr-b.example")
    stranger = _issue(tmp_path, ca, "stranger")
    (tmp_path / "rogue").mkdir()
    forged = _issue(tmp_path / "rogue", rogue, "ehr-a")  # same CN, wrong CA
    settings: Settings = cfg.model_copy(
        update={
            "practices": [A, B],
            "mllp_tls_cert": server[0],
            "mllp_tls_key": server[1],
            "mllp_tls_client_ca": ca[0],
            "mllp_client_practices": {_der_fingerprint(ehr_a[0]): A, "san:ehr-b.example": B},
        }
    )
    assert tls_context(settings).verify_mode == ssl.CERT_REQUIRED

    def client(cert: tuple[Path, Path] | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(ca[0]))
        ctx.check_hostname = False
        if cert:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        return ctx

    async def go():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        core = GatewayCore(producer, AvroSerde(registry_client(stack.registry_url)), cfg.topic_prefix, name="mtls")
        gw = mllp_gateway(settings, core, port=0)
        await gw.start()
        out: dict[str, object] = {}
        try:
            async with MllpClient("127.0.0.1", gw.port, ssl=client(ehr_a)) as c:
                out["a"] = ack_code(await c.send(oru_r01(control_id="MT-A")))
                as_b = oru_r01(control_id="MT-A-AS-B").replace(b"|EHR|DEMO CLINIC|", f"|EHR|{B}|".encode())
                out["a_as_b"] = ack_code(await c.send(as_b))
            async with MllpClient("127.0.0.1", gw.port, ssl=client(ehr_b)) as c:
                out["b"] = ack_code(await c.send(oru_r01(control_id="MT-B")))
            async with MllpClient("127.0.0.1", gw.port, ssl=client(stranger)) as c:
                out["stranger"] = ack_code(await c.send(oru_r01(control_id="MT-S")))
            for name, cert in (("no_cert", None), ("rogue", forged)):
                try:
                    async with MllpClient("127.0.0.1", gw.port, ssl=client(cert)) as c:
                        out[name] = ack_code(await c.send(oru_r01(control_id="MT-X"), timeout=5))
                except (TimeoutError, ssl.SSLError, ConnectionError, asyncio.IncompleteReadError) as e:
                    out[name] = f"refused: {type(e).__name__}"
        finally:
            await gw.stop()
            producer.close()
        return out

    out = asyncio.run(go())
    assert out["a"] == "AA" and out["b"] == "AA"
    assert out["a_as_b"] == "AR" and out["stranger"] == "AR"
    assert str(out["no_cert"]).startswith("refused") and str(out["rogue"]).startswith("refused")
    serde = AvroSerde(registry_client(stack.registry_url))
    raws = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.raw.hl7v2", serde, 99, 5)
    by_practice = {(v["practice_id"], v["message_id"].split("|")[-1]) for _, v in raws}
    assert {p for p, _ in by_practice} == {A, B} and len(raws) == 2
    assert all(b"MT-A-AS-B" not in v["payload"] and b"MT-S" not in v["payload"] for _, v in raws)
    letters = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.dlq.hl7v2", serde, 99, 5)]
    assert {(v["practice_id"], v["reason_code"]) for v in letters} == {
        (A, "forbidden"),
        (UNKNOWN_PRACTICE, "unauthenticated"),
    }
    assert all(v["payload"] == b"" for v in letters)
