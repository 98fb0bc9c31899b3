"""The contract every normalizer in ``processors/`` follows.

A normalizer is a pure function: raw bytes (plus the practice id and the time the
gateway received them) in, a :class:`NormalizeResult` out, or :class:`Rejected`
raised with a machine-readable code and a human reason. No I/O, no clock, no
globals that change: the same input gives the same records, which is what makes
replays after a restart safe.

Records are plain dicts shaped exactly like ``schemas/avro/<record_type>.avsc``
(fast to build, and fastavro writes them directly). Tests validate them against the
schemas. The pydantic models in ``practiceflow.schemas.models`` describe the same
shapes for code that wants objects.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast


class Rejected(Exception):
    """Input that cannot become a normalized record; it goes to the dead-letter topic."""

    def __init__(self, reason_code: str, reason: str) -> None:
        super().__init__(f"{reason_code}: {reason}")
        self.reason_code = reason_code
        self.reason = reason


class Transient(Exception):
    """A failure that may pass if the same input is tried again later: a subprocess killed,
    a store or service unreachable, a timeout. The worker retries it with backoff
    (``processors/retry.py``) instead of dead-lettering it; pure code raises it when
    it knows an input is fine but a dependency was not."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Normalized(NamedTuple):
    """One output record: its Avro record name, its entity key, and its value.

    A NamedTuple (immutable, no per-instance dict): the hot normalizers build it with
    one ``tuple.__new__`` call, which costs a fraction of a frozen dataclass's
    ``__init__`` and matters at 16 records per HL7 result message.
    """

    record_type: str
    key: str
    value: dict[str, Any]


def typed_record(record_type: str, key: str, value: Mapping[str, Any]) -> Normalized:
    """A Normalized from a record built as its TypedDict (``schemas/typed.py``).

    A TypedDict is the dict itself at run time; the type checker only refuses it where a
    ``dict[str, Any]`` is expected (it could be given keys the record does not have). The
    processors annotate the dict they build (a misspelt field is then a type error) and
    hand it over here, where it becomes the plain value every consumer reads.
    """
    return Normalized(record_type, key, cast(dict[str, Any], value))


@dataclass(slots=True)
class NormalizeResult:
    message_id: str
    message_type: str
    records: list[Normalized] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # the sender's own id without the content (HL7: MSH-3/4/10) where ``message_id`` also
    # hashes the content: the worker flags an id reused for different content with it
    control_key: str | None = None


def entity_key(practice_id: str, *parts: str | None) -> str:
    """The Kafka message key: practice first, so keys never collide across tenants."""
    return "/".join([practice_id, *(p or "-" for p in parts)])


def ascii_digits(s: str) -> bool:
    """True when ``s`` is one or more ASCII digits 0-9, i.e. exactly the strings that
    ``int(s)`` reads as a plain decimal number with no sign, space or underscore.

    ``str.isdigit()`` is not that test: it is also true for superscripts and other
    Unicode digits ("2\u00b9", "\u2460"), on which ``int()`` raises ValueError. Mutated X12 input
    hit exactly that (an SE01 count of "2\u00b9"), so every parser uses this helper instead.
    """
    return s.isascii() and s.isdigit()


def content_id(data: bytes) -> str:
    """A stable id for content that carries no id of its own."""
    return hashlib.sha256(data).hexdigest()[:32]


class _GcPause:
    """A class, not ``@contextlib.contextmanager``: entering and leaving a generator-based
    manager cost ~4 us per call, a few percent of an HL7 message's whole budget."""

    __slots__ = ("was_enabled",)

    def __enter__(self) -> None:
        self.was_enabled = gc.isenabled()
        if self.was_enabled:
            gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was_enabled:
            gc.enable()


def guarded(normalize: Callable[..., NormalizeResult], *args: Any) -> NormalizeResult:
    """Run a normalizer's body with the collector paused (``gc_paused``). A bug in it
    (any exception but ``Rejected`` or ``Transient``) becomes ``Rejected("internal_error")``,
    so the input is dead-lettered with the error text instead of crashing the stream."""
    try:
        with gc_paused():
            return normalize(*args)
    except (Rejected, Transient):
        raise
    except Exception as exc:
        raise Rejected("internal_error", f"{type(exc).__name__}: {exc}") from exc


def gc_paused() -> _GcPause:
    """Pause the cyclic garbage collector for one normalizer call.

    A normalizer allocates many small dicts and lists that all stay alive until it
    returns, so collections triggered mid-call only re-scan live objects: 25-40 % of
    the run time in the HL7 and X12 benchmarks. Nothing a normalizer builds forms a
    reference cycle (tests check this), so refcounting frees it all; the collector's
    previous state is restored on every exit path.
    """
    return _GcPause()
