"""The ICD-10-CM snapshot (processors/workflows/prior_auth/codes.py): a restarted worker reads
the code set from its state folder instead of parsing the package's XML (issue 8: resume
within 10 s), and the checks answer exactly as the package does."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from practiceflow.processors.workflows.prior_auth import codes

EDGES = ["m54.16", " M54.16 ", "M54.0", "M541.6", "ZZZ", "", "A0", "M54.", "M54.1X", "m5416", "A00-A09", "1", "u071"]


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(codes, "_table", None)
    codes.check.cache_clear()
    yield
    codes.check.cache_clear()


def _package_answer(code: str) -> tuple[str, bool, bool, str | None]:
    """What the checks answered before the snapshot: the package's own functions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm as cm
    c = code.strip().upper()
    try:
        valid = bool(cm.is_valid_item(c))
    except Exception:
        valid = False
    if not valid:
        return (c, False, False, None)
    return (c, True, bool(cm.is_leaf(c)), str(cm.get_description(c)))


def test_the_second_start_reads_the_snapshot_and_answers_as_the_package(
    tmp_path: Path, fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    codes.load_code_set(tmp_path)
    path = codes.snapshot_path(tmp_path)
    assert path.is_file()
    written = json.loads(path.read_text())
    assert written["package"] == codes.code_set_release() and len(written["codes"]) > 90_000

    monkeypatch.setattr(codes, "_table", None)  # a restart: nothing in memory
    codes.check.cache_clear()

    def no_parse() -> codes.CodeTable:
        raise AssertionError("parsed the package although the snapshot was there")

    monkeypatch.setattr(codes, "_from_package", no_parse)
    codes.load_code_set(tmp_path)
    sample = list(written["codes"])[::97] + [c.replace(".", "") for c in list(written["codes"])[::193]] + EDGES
    for code in sample:
        got = codes.check(code)
        assert (got.code, got.valid, got.billable, got.description) == _package_answer(code), code


def test_a_snapshot_that_does_not_read_back_is_rebuilt_from_the_package(tmp_path: Path, fresh: None) -> None:
    path = codes.snapshot_path(tmp_path)
    path.write_text('{"codes": {"M54.16": [true', encoding="utf-8")  # cut off mid-write by an old version
    codes.load_code_set(tmp_path)
    assert codes.check("M54.16").billable and not codes.check("M54.1").billable
    assert not codes.check("M54.99").valid
    assert len(json.loads(path.read_text())["codes"]) > 90_000  # rewritten whole


def test_a_snapshot_of_another_package_release_is_rebuilt_and_a_failed_write_leaves_nothing(
    tmp_path: Path, fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = codes.snapshot_path(tmp_path)
    stale = {"package": "simple-icd-10-cm 0.0.1", "count": 1, "codes": {"M54.16": [False, "old"]}}
    path.write_text(json.dumps(stale), encoding="utf-8")
    codes.load_code_set(tmp_path)
    assert codes.check("M54.16").billable  # not the stale answer
    assert json.loads(path.read_text())["package"] == codes.code_set_release()

    monkeypatch.setattr(codes, "_table", None)
    other = tmp_path / "full-disk"

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(codes.json, "dump", no_space)
    codes.load_code_set(other)  # still loads, from the package
    assert codes.check("M54.16").valid
    assert list(other.iterdir()) == []  # no partial temporary file
