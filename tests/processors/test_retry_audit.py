"""Pure rules: which failures are retried and when, and audit event ids unique per event."""

from __future__ import annotations

import subprocess

from practiceflow.processors.audit import audit_event, chain, verify_chain
from practiceflow.processors.base import Rejected, Transient, guarded
from practiceflow.processors.retry import (
    ATTEMPT,
    LAST_ERROR,
    NOT_BEFORE,
    RetryPolicy,
    attempts_made,
    backoff_ms,
    decide,
    is_transient,
    not_before,
    retry_headers,
)


def test_dependency_failures_are_transient_input_failures_are_not():
    assert is_transient(Transient("document store down"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(TimeoutError())
    assert is_transient(subprocess.CalledProcessError(-9, ["tesseract"]))  # killed by a signal
    assert not is_transient(subprocess.CalledProcessError(2, ["tesseract"]))  # looked at the input and refused
    assert not is_transient(ValueError("bad date"))
    assert not is_transient(KeyError("PID"))

    class ReadTimeout(Exception):  # named like requests'/httpx's, without importing them
        pass

    assert is_transient(ReadTimeout())


def test_guarded_lets_transient_through_and_turns_bugs_into_internal_error():
    def flaky() -> None:
        raise Transient("registry timeout")

    def buggy() -> None:
        raise ZeroDivisionError

    try:
        guarded(flaky)
    except Transient:
        pass
    else:
        raise AssertionError("Transient was swallowed")
    try:
        guarded(buggy)
    except Rejected as rej:
        assert rej.reason_code == "internal_error"


def test_backoff_doubles_up_to_the_cap_and_attempts_are_bounded():
    policy = RetryPolicy(max_attempts=4, base_ms=1000, max_backoff_ms=3000)
    assert [backoff_ms(policy, a) for a in (1, 2, 3, 4)] == [1000, 2000, 3000, 3000]
    headers: dict[str, str] = {"content_type": "x"}
    t = 1_000_000
    seen = []
    while True:
        d = decide(policy, headers, t)
        seen.append((d.retry, d.attempt))
        if not d.retry:
            break
        headers = retry_headers(headers, d, "OSError: down", t)
        assert not_before(headers) == d.not_before == t + backoff_ms(policy, d.attempt)
        assert headers["content_type"] == "x" and headers[LAST_ERROR] == "OSError: down"
    assert seen == [(True, 1), (True, 2), (True, 3), (False, 4)]
    assert attempts_made(headers) == 3 and int(headers[ATTEMPT]) == 3 and NOT_BEFORE in headers
    assert attempts_made({ATTEMPT: "junk"}) == 0 and attempts_made(None) == 0


def test_audit_ids_unique_per_event_and_stable_across_replays():
    def ev(source: str | None, seq: int = 0, at: int = 1) -> dict:
        return audit_event(
            "p1",
            actor="practiceflow.worker",
            action="normalized",
            entity_type="RawMessage",
            entity_id="M1",
            reason="r",
            at=at,
            source=source,
            seq=seq,
        )

    # the same message handled again after a crash (later clock): same id
    assert ev("hl7v2/M1@100", at=5)["event_id"] == ev("hl7v2/M1@100", at=9)["event_id"]
    # a resend of M1 received later, or another event of the same message: new ids
    assert ev("hl7v2/M1@100")["event_id"] != ev("hl7v2/M1@200")["event_id"]
    assert ev("hl7v2/M1@100", seq=0)["event_id"] != ev("hl7v2/M1@100", seq=1)["event_id"]
    # without a source (gateways), two identical actions at different times differ
    assert ev(None, at=1)["event_id"] != ev(None, at=2)["event_id"]
    a = chain(None, ev(None, at=1))
    b = chain(a["hash"], ev(None, at=2))
    assert verify_chain([a, b]) == (True, -1)
    assert verify_chain([a, b, b]) == (False, 2)  # a doubled event reads as tampering
