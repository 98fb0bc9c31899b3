"""The LLM layer's pure core: the PHI guard's rules, prompts, output validation, span check, fallback."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from practiceflow.processors.llm import fallback
from practiceflow.processors.llm.config import LLMSettings
from practiceflow.processors.llm.guard import EndpointRefused, address_problem, check_url
from practiceflow.processors.llm.prompts import PromptError, load_prompt, render
from practiceflow.processors.llm.tasks import TASKS, ClassificationOutput, ExtractionOutput, LLMRequest
from practiceflow.processors.llm.validate import OutputInvalid, checked_result, locate, parse_output

PAGE1 = """FAX COVER SHEET
To: Demo Family Medicine
From: Riverside Laboratory
From Fax: (555) 010-4477
Pages: 2
"""
PAGE2 = """LABORATORY REPORT
Patient Name: Alex   Testpatient
DOB: 01/01/1980
MRN: MRN1001
Test: Hemoglobin A1c   9.1 %   H
"""


def request(**kw) -> LLMRequest:
    base = {"task": "fax_extract", "pages": [{"page": 1, "text": PAGE1}, {"page": 2, "text": PAGE2}]}
    base.update(kw)
    return LLMRequest.model_validate(base)


# ----------------------------------------------------------------- the guard
PUBLIC = [
    "https://api.openai.com/v1",
    "https://API.OpenAI.com./v1",  # case and a trailing dot do not get around it
    "https://contoso.openai.azure.com/openai/deployments/x",
    "https://api.anthropic.com/v1/messages",
    "https://generativelanguage.googleapis.com/v1beta",
    "https://us-central1-aiplatform.googleapis.com/v1",
    "https://api.mistral.ai/v1",
    "https://api.cohere.ai/v1",
    "https://api.groq.com/openai/v1",
    "https://api.together.xyz/v1",
    "https://openrouter.ai/api/v1",
    "https://bedrock-runtime.us-east-1.amazonaws.com",
]


@pytest.mark.parametrize("url", PUBLIC)
def test_public_ai_hosts_are_refused_even_when_allow_listed(url):
    with pytest.raises(EndpointRefused) as err:
        check_url(url, [url])
    assert err.value.code == "llm_public_endpoint"
    assert "public AI API" in str(err.value)


@pytest.mark.parametrize("url", PUBLIC[:4])
def test_settings_refuse_a_public_endpoint_at_load(url):
    with pytest.raises(ValidationError, match="public AI API"):
        LLMSettings(base_url=url, allowed_endpoints=[url])
    with pytest.raises(ValidationError, match="public AI API"):
        LLMSettings(allowed_endpoints=["http://10.0.0.5:8000", url])


def test_only_allow_listed_origins_pass():
    allowed = ["http://vllm.internal:8000/v1"]
    assert str(check_url("http://vllm.internal:8000/v1/chat/completions", allowed)) == "http://vllm.internal:8000"
    assert check_url("http://VLLM.internal:8000/anything", allowed).host == "vllm.internal"
    for other in ("http://vllm.internal:8001/v1", "https://vllm.internal:8000/v1", "http://evil.internal:8000/v1"):
        with pytest.raises(EndpointRefused) as err:
            check_url(other, allowed)
        assert err.value.code == "llm_endpoint_not_allowed"
    with pytest.raises(EndpointRefused):
        check_url("http://vllm.internal:8000/v1", [])  # an empty allow-list calls nothing
    with pytest.raises(ValidationError, match="allow-list"):
        LLMSettings(base_url="http://vllm.internal:8000/v1")  # base_url must be on the list


def test_addresses_must_be_private():
    for ok in ("10.1.2.3", "192.168.0.9", "172.16.5.5", "127.0.0.1", "::1", "fd00::1", "100.100.1.1", "fe80::1%eth0"):
        assert address_problem(ok) is None, ok
    for public in ("8.8.8.8", "104.18.6.192", "::ffff:8.8.8.8", "2606:4700::1"):
        assert "public" in (address_problem(public) or ""), public


# ----------------------------------------------------------------- prompts
def test_prompt_files_are_versioned_and_rendered():
    p = load_prompt("fax_extract", "v1")
    assert p.ref.startswith("fax_extract/v1@") and len(p.ref) == len("fax_extract/v1@") + 12
    msgs = render(p, request(fields=["patient_name", "mrn"], hints={"class": "lab_result"}))
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "patient_name, mrn" in msgs[1]["content"]
    assert "=== page 2 ===\nLABORATORY REPORT" in msgs[1]["content"]
    assert '"class": "lab_result"' in msgs[1]["content"]
    with pytest.raises(PromptError):
        load_prompt("fax_extract", "v999")
    with pytest.raises(PromptError):
        load_prompt("fax_extract", "../../etc/passwd")


def test_a_practice_adds_its_own_prompt_version(tmp_path):
    (tmp_path / "fax_extract").mkdir()
    (tmp_path / "fax_extract" / "v1-ours.md").write_text("<!-- role: user -->\nJust $fields from:\n$pages\n")
    p = load_prompt("fax_extract", "v1-ours", tmp_path)
    assert render(p, request())[0]["content"].startswith("Just patient_name, dob")
    (tmp_path / "fax_extract" / "bad.md").write_text("<!-- role: user -->\n$nonsense\n")
    with pytest.raises(PromptError, match="placeholder"):
        render(load_prompt("fax_extract", "bad", tmp_path), request())


def test_json_schema_narrows_field_names():
    schema = TASKS["fax_extract"].json_schema(["mrn", "dob", "not_a_field"])
    assert schema["$defs"]["QuotedField"]["properties"]["name"]["enum"] == ["mrn", "dob"]
    assert "label" in TASKS["fax_classify"].json_schema()["properties"]


# ----------------------------------------------------------------- validation
def test_truncated_and_non_json_and_off_schema_answers():
    with pytest.raises(OutputInvalid) as err:
        parse_output("fax_extract", '{"fields": [{"name": "mrn", "te', "length")
    assert err.value.code == "llm_truncated_json"
    with pytest.raises(OutputInvalid) as err:
        parse_output("fax_extract", '{"fields": [{"name": "mrn", "te')  # no finish_reason: still cut off
    assert err.value.code == "llm_truncated_json"
    with pytest.raises(OutputInvalid) as err:
        parse_output("fax_extract", "Sure! Here is the JSON you asked for.")
    assert err.value.code == "llm_not_json"
    with pytest.raises(OutputInvalid) as err:
        parse_output("fax_extract", '{"fields": "see attached"}')
    assert err.value.code == "llm_schema_violation"
    with pytest.raises(OutputInvalid) as err:
        parse_output("fax_classify", '{"label": "horoscope", "confidence": 7, "evidence": []}')
    assert err.value.code == "llm_schema_violation"


def test_locate_tolerates_whitespace_and_case_only():
    assert locate(PAGE2, "Alex Testpatient") == (PAGE2.index("Alex"), PAGE2.index("Testpatient") + len("Testpatient"))
    assert locate(PAGE2, "mrn1001") is not None
    assert locate(PAGE2, "1980-01-01") is None  # a normalized date is not in the document
    assert locate(PAGE2, "01/01/1981") is None


def test_span_check_keeps_found_values_and_drops_invented_ones():
    out = ExtractionOutput.model_validate(
        {
            "fields": [
                {"name": "patient_name", "text": "alex testpatient", "page": 2},
                {"name": "mrn", "text": "MRN1001", "page": 1},  # wrong page: found on page 2
                {"name": "dob", "text": "1980-01-01", "page": 2},  # normalized: not in the text
                {"name": "sender_fax", "text": "(555) 010-4478", "page": 1},  # one digit off
            ]
        }
    )
    res = checked_result(request(), out, source="model", model="m")
    kept = {f.name: f for f in res.fields}
    assert set(kept) == {"patient_name", "mrn"}
    assert kept["patient_name"].text == "Alex   Testpatient"  # the document's own characters
    assert PAGE2[kept["patient_name"].span_start : kept["patient_name"].span_end] == "Alex   Testpatient"
    assert kept["mrn"].page == 2
    assert {d.name for d in res.dropped} == {"dob", "sender_fax"}
    assert res.needs_person
    assert "llm_span_not_found:dob" in res.reasons


def test_a_field_not_asked_for_is_dropped():
    out = ExtractionOutput.model_validate({"fields": [{"name": "mrn", "text": "MRN1001", "page": 2}]})
    res = checked_result(request(fields=["patient_name"]), out, source="model")
    assert res.fields == [] and res.dropped[0].reason == "llm_field_not_requested" and res.needs_person


def test_a_class_without_evidence_in_the_document_keeps_no_label():
    supported = ClassificationOutput.model_validate(
        {"label": "lab_result", "confidence": 0.9, "evidence": [{"text": "laboratory report", "page": 2}]}
    )
    res = checked_result(request(task="fax_classify"), supported, source="model")
    assert res.label == "lab_result" and not res.needs_person and res.evidence[0].page == 2
    invented = ClassificationOutput.model_validate(
        {"label": "referral", "confidence": 0.95, "evidence": [{"text": "Referral for cardiology", "page": 1}]}
    )
    res = checked_result(request(task="fax_classify"), invented, source="model")
    assert res.label is None and res.needs_person and "llm_label_unsupported" in res.reasons


def test_the_embedded_fallback_reads_labelled_fields():
    out = fallback.extract_labelled(request())
    got = {f.name: (f.text, f.page) for f in out.fields}
    assert got["patient_name"] == ("Alex   Testpatient", 2)
    assert got["dob"] == ("01/01/1980", 2)
    assert got["mrn"] == ("MRN1001", 2)
    assert got["sender_fax"] == ("(555) 010-4477", 1)
    assert got["addressee"] == ("Demo Family Medicine", 1)
    res = checked_result(request(), out, source="fallback")
    assert not res.dropped  # everything it returns is a span of the page by construction


def test_commands_are_keyed_by_the_question():
    from practiceflow.processors.llm.commands import llm_command, read_result

    a = llm_command("clinic-a", "fax", "doc-1/p2", request(), now=1)
    again = llm_command("clinic-a", "fax", "doc-1/p2", request(), now=99)
    other = llm_command("clinic-a", "fax", "doc-1/p2", request(prompt_version="v2"), now=1)
    elsewhere = llm_command("clinic-b", "fax", "doc-1/p2", request(), now=1)
    assert a["command_id"] == again["command_id"] != other["command_id"] != elsewhere["command_id"]
    assert a["command_id"].startswith("llm:") and a["kind"] == "llm" and a["payload_type"] == "llm.request"
    assert LLMRequest.model_validate_json(a["payload"]) == request()
    assert read_result({"outcome": "failed", "reason": "llm_bad_request", "payload": ""}).needs_person


def test_fax_adapter_offers_checked_values_once_the_result_is_in():
    from practiceflow.processors.llm.fax import LLMResultExtractor, extraction_request, model_values

    pages, numbers = [PAGE1, PAGE2], [1, 2]
    req = extraction_request("lab_result", pages, numbers)
    assert req.hints == {"class": "lab_result"} and [p.page for p in req.pages] == [1, 2]
    out = ExtractionOutput.model_validate({"fields": [{"name": "mrn", "text": "MRN1001", "page": 2}]})
    result = checked_result(req, out, source="model")
    ex = LLMResultExtractor("clinic-a", "doc-abc", {})
    assert ex.extract("lab_result", pages, numbers) == []  # not answered yet: emit ex.command_id(...)
    ex = LLMResultExtractor("clinic-a", "doc-abc", {ex.command_id("lab_result", pages, numbers): result})
    [v] = ex.extract("lab_result", pages, numbers)
    assert (v.field, v.value, v.page, v.source) == ("mrn", "MRN1001", 2, "llm")
    assert PAGE2[v.start : v.end] == "MRN1001"
    assert model_values(result) == [v]
