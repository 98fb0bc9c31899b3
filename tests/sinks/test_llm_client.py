"""The guarded LLM client and service against a real local OpenAI-compatible server process.

The server (practiceflow/localstack/llm_server.py) is an aiohttp process on loopback with a
deterministic rule-based "model" and failure modes: slow, 5xx, truncated JSON, off-schema
output, invented values, a redirect to a public AI API.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from practiceflow.processors.llm.config import LLMSettings
from practiceflow.processors.llm.guard import EndpointRefused
from practiceflow.processors.llm.tasks import LLMRequest
from practiceflow.sinks.llm.client import LLMClient, LLMUnavailable
from practiceflow.sinks.llm.service import LLMService
from tests.fixtures import closed_port
from tests.llm_fixtures import llm_server, llm_settings, server_state, set_mode

__all__ = ["llm_server"]  # the fixture, imported for pytest

PHI_NAME = "Quentin Zebulon"
PAGES = [
    {
        "page": 1,
        "text": "FAX COVER SHEET\nTo: Demo Family Medicine\nFrom: Riverside Laboratory\nFrom Fax: 5550104477\n",
    },
    {
        "page": 2,
        "text": f"LABORATORY REPORT\nPatient Name: {PHI_NAME}\nDOB: 03/14/1962\nMRN: MRN7788\nTest: HbA1c 9.1 % H\n",
    },
]


def extract_request(**kw) -> LLMRequest:
    return LLMRequest.model_validate({"task": "fax_extract", "pages": PAGES, **kw})


def run(coro):
    return asyncio.run(coro)


async def _run_service(cfg: LLMSettings, req: LLMRequest, n: int = 1):
    service = LLMService.from_settings(cfg)
    try:
        return [await service.run(req) for _ in range(n)]
    finally:
        await service.aclose()


def test_normal_answer_is_validated_and_span_checked(llm_server, caplog):
    set_mode(llm_server, "normal")
    caplog.set_level(logging.DEBUG)
    [(result, record)] = run(_run_service(llm_settings(llm_server), extract_request()))
    assert result.source == "model" and record.outcome == "ok" and not result.needs_person
    got = {f.name: f for f in result.fields}
    assert got["patient_name"].text == PHI_NAME and got["patient_name"].page == 2
    assert PAGES[1]["text"][got["mrn"].span_start : got["mrn"].span_end] == "MRN7788"
    assert got["sender_fax"].text == "5550104477" and got["sender_fax"].page == 1
    assert record.model == "practiceflow/rule-model-1" and record.prompt.startswith("fax_extract/v1@")
    assert len(record.input_sha256) == 64 and record.attempts == 1 and record.latency_ms > 0
    state = server_state(llm_server)
    assert state["last_style"] == "response_format"  # the JSON schema went with the request
    assert PHI_NAME not in caplog.text and "03/14/1962" not in caplog.text  # no prompt/completion text in logs


@pytest.mark.parametrize("style", ["structured_outputs", "guided_json"])
def test_older_and_newer_vllm_schema_spellings(llm_server, style):
    set_mode(llm_server, "normal")
    [(result, _)] = run(_run_service(llm_settings(llm_server, structured_output=style), extract_request()))
    assert result.source == "model" and result.fields
    assert server_state(llm_server)["last_style"] == style


def test_classification_with_evidence(llm_server):
    set_mode(llm_server, "normal")
    req = LLMRequest.model_validate({"task": "fax_classify", "pages": PAGES[1:]})
    [(result, _)] = run(_run_service(llm_settings(llm_server), req))
    assert result.label == "lab_result" and result.evidence[0].text == "LABORATORY"
    assert result.evidence[0].page == 2 and not result.needs_person


def test_invented_values_are_dropped_and_go_to_a_person(llm_server):
    set_mode(llm_server, "wrong_spans")
    [(result, record)] = run(_run_service(llm_settings(llm_server), extract_request()))
    assert result.source == "model" and record.outcome == "ok"
    assert result.fields == []  # every value was altered: none is in the document
    assert {d.reason for d in result.dropped} == {"llm_span_not_found"}
    assert result.needs_person and "llm_span_not_found:patient_name" in result.reasons
    req = LLMRequest.model_validate({"task": "fax_classify", "pages": PAGES})
    [(result, _)] = run(_run_service(llm_settings(llm_server), req))
    assert result.label is None and result.needs_person


@pytest.mark.parametrize(("mode", "code"), [("truncated", "llm_truncated_json"), ("schema", "llm_schema_violation")])
def test_unusable_answers_fall_back_and_go_to_a_person(llm_server, mode, code):
    set_mode(llm_server, mode)
    [(result, record)] = run(_run_service(llm_settings(llm_server), extract_request()))
    assert record.outcome == "invalid_output" and record.reason == code
    assert record.model == "practiceflow/rule-model-1" and record.input_sha256  # still audited as a call
    assert result.source == "fallback" and result.needs_person and result.reasons[0] == f"fallback:{code}"
    assert {f.name for f in result.fields} >= {"patient_name", "mrn", "dob"}  # the input is not lost


def test_a_slow_server_falls_back_at_the_deadline(llm_server):
    set_mode(llm_server, "slow", delay_s=3)
    cfg = llm_settings(llm_server, timeout_s=0.5, deadline_s=1.2, max_attempts=5)
    [(result, record)] = run(_run_service(cfg, extract_request()))
    assert record.outcome == "unavailable" and record.reason == "llm_deadline"
    assert result.source == "fallback" and result.needs_person
    assert {f.name for f in result.fields} >= {"patient_name", "mrn"}


def test_a_down_server_falls_back_without_losing_the_input():
    port = closed_port()
    cfg = LLMSettings(
        base_url=f"http://127.0.0.1:{port}/v1",
        allowed_endpoints=[f"http://127.0.0.1:{port}"],
        model="m",
        backoff_s=0.01,
        backoff_max_s=0.02,
    )
    [(result, record)] = run(_run_service(cfg, extract_request()))
    assert record.outcome == "unavailable" and record.reason == "llm_unreachable"
    assert result.source == "fallback" and result.model == "embedded:labelled-fields@1"
    got = {f.name: f.text for f in result.fields}
    assert got["patient_name"] == PHI_NAME and got["mrn"] == "MRN7788"
    assert result.needs_person and result.reasons[0] == "fallback:llm_unreachable"


def test_5xx_is_retried_then_the_breaker_opens(llm_server):
    set_mode(llm_server, "normal", fail_next=1)
    [(result, record)] = run(_run_service(llm_settings(llm_server), extract_request()))
    assert result.source == "model" and record.attempts == 2  # one 500, then the answer

    set_mode(llm_server, "fail")
    cfg = llm_settings(llm_server, max_attempts=2, breaker_fail_max=3, breaker_reset_s=60)
    results = run(_run_service(cfg, extract_request(), n=4))
    reasons = [rec.reason for _, rec in results]
    # call 1: two attempts (500, 500); call 2: the third failure opens the breaker; then fail fast
    assert reasons == ["llm_server_error", "llm_breaker_open", "llm_breaker_open", "llm_breaker_open"]
    assert server_state(llm_server)["counts"]["chat"] == 3  # nothing reached the server once open
    assert all(r.source == "fallback" and r.fields for r, _ in results)


def test_concurrency_is_limited(llm_server):
    set_mode(llm_server, "slow", delay_s=0.3)
    cfg = llm_settings(llm_server, concurrency=2)

    async def many():
        service = LLMService.from_settings(cfg)
        try:
            return await asyncio.gather(*(service.run(extract_request()) for _ in range(6)))
        finally:
            await service.aclose()

    out = run(many())
    assert all(r.source == "model" for r, _ in out)
    counts = server_state(llm_server)["counts"]
    assert counts["chat"] == 6 and counts["max_in_flight"] == 2


def test_a_redirect_to_a_public_ai_api_is_refused(llm_server):
    set_mode(llm_server, "redirect")
    [(result, record)] = run(_run_service(llm_settings(llm_server), extract_request()))
    assert record.outcome == "refused" and record.reason == "llm_public_endpoint"
    assert result.source == "fallback" and result.needs_person  # the fax still reaches a person, read locally
    assert server_state(llm_server)["counts"]["chat"] == 1  # the first hop; the second was never sent


class Recorder(httpx.AsyncBaseTransport):
    """A transport that records what would have been sent (nothing must be)."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(200, json={"data": []})


def test_the_guard_refuses_a_public_endpoint_whatever_the_settings_say():
    # settings validation refuses it (tests/processors/test_llm_core.py); here the settings
    # object is forced past validation, as a bug or a monkeypatch might, and the client
    # still refuses before a byte is sent
    forced = LLMSettings.model_construct(
        **{
            **LLMSettings().model_dump(),
            "base_url": "https://api.openai.com/v1",
            "allowed_endpoints": ["https://api.openai.com"],
            "model": "gpt",
        }
    )
    with pytest.raises(EndpointRefused) as err:
        LLMClient(forced, transport=Recorder())
    assert err.value.code == "llm_public_endpoint"

    # the same with a client built for an allowed server whose base_url is then swapped
    rec = Recorder()
    client = LLMClient(
        LLMSettings(base_url="http://10.9.9.9:8000/v1", allowed_endpoints=["http://10.9.9.9:8000"], model="m"),
        transport=rec,
    )
    client.base_url = "https://api.anthropic.com/v1"
    with pytest.raises(EndpointRefused):
        run(client.complete([{"role": "user", "content": PHI_NAME}], "x", {"type": "object"}))
    assert rec.sent == []


def test_an_allow_listed_host_on_a_public_address_is_refused():
    rec = Recorder()
    cfg = LLMSettings(base_url="http://8.8.8.8:8000/v1", allowed_endpoints=["http://8.8.8.8:8000"], model="m")
    client = LLMClient(cfg, transport=rec)
    with pytest.raises(EndpointRefused) as err:
        run(client.complete([{"role": "user", "content": PHI_NAME}], "x", {"type": "object"}))
    assert err.value.code == "llm_public_address" and rec.sent == []
    # an operator who really runs the model on a public address says so explicitly
    ok = LLMClient(cfg.model_copy(update={"require_private_address": False}), transport=rec)
    with pytest.raises(LLMUnavailable):  # the recorder's answer has no choices: sent, then rejected
        run(ok.complete([{"role": "user", "content": "x"}], "x", {"type": "object"}))
    assert len(rec.sent) == 1


def test_no_server_configured_means_fallback_only():
    [(result, record)] = run(_run_service(LLMSettings(), extract_request()))
    assert record.outcome == "fallback" and record.reason == "llm_not_configured" and result.source == "fallback"
