"""The pure credential checks (processors/auth.py) and the credential settings."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError

from practiceflow.processors.auth import (
    bearer_token,
    cert_fingerprint,
    claimed_receiving_facility,
    practice_for_certificate,
    practice_for_token,
    valid_practice_id,
)
from practiceflow.settings import Settings, secret_bytes

SECRETS = {"clinic-a": (b"a-current", b"a-next"), "clinic-b": (b"b-only",)}


def test_a_token_authenticates_exactly_its_practice():
    assert practice_for_token("a-current", SECRETS) == "clinic-a"
    assert practice_for_token("a-next", SECRETS) == "clinic-a"  # rotation: both valid at once
    assert practice_for_token("b-only", SECRETS) == "clinic-b"
    for bad in (None, "", "a-curren", "a-current ", "b-only\x00", "A-CURRENT"):
        assert practice_for_token(bad, SECRETS) is None
    assert practice_for_token("", {"p": (b"",)}) is None  # an empty secret authenticates nobody


@given(st.text(max_size=40))
def test_no_random_token_authenticates(token: str):
    assert practice_for_token(token, SECRETS) is None or token in ("a-current", "a-next", "b-only")


def test_bearer_header_parsing():
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token("Bearer ") is None and bearer_token(None) is None


def test_practice_ids_that_cannot_name_a_tenant():
    assert valid_practice_id("clinic-a") and valid_practice_id("c1.b_2")
    for bad in ("", "..", ".", "a/b", "a..b", "%2e%2e", "-x"[1:] + "\n", "x" * 65, ".hidden"):
        assert not valid_practice_id(bad), bad


def test_certificate_mapping_prefers_the_fingerprint_then_san_then_cn():
    cert = {"subject": ((("commonName", "ehr-a"),),), "subjectAltName": (("DNS", "ehr.example"),)}
    der = b"fake-der"
    fp = cert_fingerprint(der)
    assert practice_for_certificate(cert, der, {"cn:ehr-a": "p-cn"}) == "p-cn"
    assert practice_for_certificate(cert, der, {"ehr-a": "p-cn"}) == "p-cn"
    assert practice_for_certificate(cert, der, {"cn:ehr-a": "p-cn", "san:ehr.example": "p-san"}) == "p-san"
    assert (
        practice_for_certificate(cert, der, {fp.upper().replace("SHA256", "sha256"): "p-fp", "cn:ehr-a": "x"}) == "p-fp"
    )
    assert practice_for_certificate(cert, der, {"cn:other": "p"}) is None
    assert practice_for_certificate(None, None, {"cn:ehr-a": "p"}) is None


def test_msh6_is_read_without_a_parser():
    assert claimed_receiving_facility(b"MSH|^~\\&|LAB|ACME|EHR|clinic-b^x^y|2026||ORU^R01|1|P|2.5\rPID|1") == "clinic-b"
    assert claimed_receiving_facility(b"MSH|^~\\&|LAB|ACME\r") == ""
    assert claimed_receiving_facility(b"not hl7") == ""


def test_credential_settings_rotate_hide_and_refuse_shared_tokens(monkeypatch):
    monkeypatch.setenv("PRACTICEFLOW_GATEWAY_TOKENS", '{"clinic-a": ["t-now", "t-next"], "clinic-b": "t-b"}')
    monkeypatch.setenv("PRACTICEFLOW_PORTAL_SECRETS", '{"clinic-a": "p-a"}')
    cfg = Settings()
    assert secret_bytes(cfg.gateway_tokens) == {"clinic-a": (b"t-now", b"t-next"), "clinic-b": (b"t-b",)}
    assert secret_bytes(cfg.portal_secrets) == {"clinic-a": (b"p-a",)}
    assert "t-now" not in repr(cfg) and "p-a" not in str(cfg.model_dump())
    with pytest.raises(ValidationError, match="share a bearer token"):
        Settings(gateway_tokens={"clinic-a": "same", "clinic-b": ["other", "same"]})
    with pytest.raises(ValidationError, match="two while rotating"):
        Settings(gateway_tokens={"clinic-a": ["1", "2", "3"]})
    with pytest.raises(ValidationError, match="empty secret"):
        Settings(portal_secrets={"clinic-a": ""})


def test_a_certificate_cn_cannot_spell_another_namespace():
    """A CN is chosen by whoever asks for the certificate: ``sha256:<B's fingerprint>`` or
    ``san:<B's name>`` as a CN must not map it to B."""
    mapping = {cert_fingerprint(b"b-der"): "clinic-b", "san:ehr-b.example": "clinic-b", "cn:ehr-a": "clinic-a"}
    for cn in (cert_fingerprint(b"b-der"), "san:ehr-b.example"):
        cert = {"subject": ((("commonName", cn),),)}
        assert practice_for_certificate(cert, b"a-der", mapping) is None, cn
    assert practice_for_certificate({"subject": ((("commonName", "ehr-a"),),)}, b"a-der", mapping) == "clinic-a"
