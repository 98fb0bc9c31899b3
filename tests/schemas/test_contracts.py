"""The Avro contracts: generated from the models, valid, and backward compatible."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import fastavro
import pytest

from practiceflow.schemas.avro_gen import AVRO_DIR, avro_schema_for, load_parsed, record_names
from practiceflow.schemas.compat import backward_errors
from practiceflow.schemas.models import ALL_RECORDS
from practiceflow.settings import REPO_ROOT


@pytest.mark.parametrize("model", ALL_RECORDS, ids=lambda m: m.__avro_name__)
def test_committed_avsc_matches_models(model):
    committed = json.loads((AVRO_DIR / f"{model.__avro_name__}.avsc").read_text())
    assert committed == avro_schema_for(model), "run `practiceflow schemas export` and commit the result"


def test_every_schema_parses_with_fastavro():
    names = record_names()
    assert len(names) == len(ALL_RECORDS)
    for name in names:
        load_parsed(name)


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], check=False, cwd=REPO_ROOT, capture_output=True, text=True)


def _previous_version(path: Path) -> dict | None:
    """The newest committed version of ``path`` whose content differs from the working tree.

    None only when git's full history says this is the contract's first version. A checkout
    without history (a shallow clone, a tarball) fails loudly: silently passing would let an
    incompatible change through exactly where nobody looks.
    """
    shallow = _git("rev-parse", "--is-shallow-repository")
    if shallow.returncode != 0:
        pytest.fail(f"not a git checkout ({shallow.stderr.strip()}): the compatibility test needs the schemas' history")
    if shallow.stdout.strip() == "true":
        pytest.fail(
            "shallow clone: the previous committed schema versions are missing. "
            "Run `git fetch --unshallow` (or clone with full history) and re-run."
        )
    rel = path.relative_to(REPO_ROOT).as_posix()
    current = path.read_text()
    log = _git("log", "--format=%H", "--", rel)
    if log.returncode != 0:
        pytest.fail(f"git log failed for {rel}: {log.stderr.strip()}")
    for commit in log.stdout.split():
        old = _git("show", f"{commit}:{rel}")
        if old.returncode == 0 and old.stdout != current:
            return json.loads(old.stdout)
    return None


@pytest.mark.parametrize("name", record_names())
def test_backward_compatible_with_previous_committed_version(name):
    path = AVRO_DIR / f"{name}.avsc"
    previous = _previous_version(path)
    if previous is None:
        return  # first version of this contract (full history): nothing to be compatible with
    errors = backward_errors(json.loads(path.read_text()), previous)
    assert not errors, f"{name} breaks backward compatibility: {errors}"


def test_a_shallow_clone_fails_loudly_instead_of_passing(tmp_path, monkeypatch):
    """Without history there is no previous version to compare with: that must be an error."""
    clone = tmp_path / "shallow"
    url = REPO_ROOT.as_uri()
    done = subprocess.run(
        ["git", "clone", "-q", "--depth", "1", url, str(clone)], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert _git_in(clone, "rev-parse", "--is-shallow-repository") == "true"
    monkeypatch.setitem(globals(), "REPO_ROOT", clone)
    with pytest.raises(pytest.fail.Exception, match="shallow clone"):
        _previous_version(clone / "schemas" / "avro" / "HandoffItem.avsc")


def _git_in(where: Path, *args: str) -> str:
    return subprocess.run(["git", *args], check=False, cwd=where, capture_output=True, text=True).stdout.strip()


BASE = {
    "type": "record",
    "name": "R",
    "fields": [
        {"name": "a", "type": "string"},
        {"name": "b", "type": ["null", "long"], "default": None},
    ],
}


def _with_fields(*fields):
    return {**BASE, "fields": list(fields)}


@pytest.mark.parametrize(
    "reader,ok",
    [
        (BASE, True),
        (_with_fields(*BASE["fields"], {"name": "c", "type": "string", "default": ""}), True),  # new field with default
        (_with_fields(*BASE["fields"], {"name": "c", "type": "string"}), False),  # new field, no default
        (_with_fields({"name": "a", "type": "long"}, BASE["fields"][1]), False),  # type change
        (
            _with_fields(BASE["fields"][0], {"name": "b", "type": ["null", "double"], "default": None}),
            True,
        ),  # promotion
        (_with_fields(BASE["fields"][0], {"name": "b", "type": "long"}), False),  # union narrowed
        (_with_fields(BASE["fields"][0]), True),  # field dropped
    ],
)
def test_compat_checker_catches_breaking_changes(reader, ok):
    assert (not backward_errors(reader, BASE)) is ok


def test_checker_agrees_with_fastavro_resolution():
    """Data written with the old schema must decode with a reader the checker accepts."""
    reader = _with_fields(*BASE["fields"], {"name": "c", "type": "string", "default": "x"})
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(BASE), {"a": "v", "b": 3})
    buf.seek(0)
    out = fastavro.schemaless_reader(buf, fastavro.parse_schema(BASE), fastavro.parse_schema(reader))
    assert out == {"a": "v", "b": 3, "c": "x"}


NESTED = {
    "type": "record",
    "name": "Outer",
    "namespace": "practiceflow",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "code", "type": {"type": "record", "name": "Coding", "fields": [{"name": "c", "type": "string"}]}},
    ],
}


def _renamed_nested(name: str, aliases: list[str] | None = None) -> dict:
    inner = {"type": "record", "name": name, "fields": [{"name": "c", "type": "string"}]}
    if aliases:
        inner["aliases"] = aliases
    return {**NESTED, "fields": [NESTED["fields"][0], {"name": "code", "type": inner}]}


def _fastavro_reads(writer: dict, reader: dict) -> bool:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(writer), {"id": "1", "code": {"c": "x"}})
    buf.seek(0)
    try:
        fastavro.schemaless_reader(buf, fastavro.parse_schema(writer), fastavro.parse_schema(reader))
    except Exception:
        return False
    return True


def test_renamed_nested_record_is_incompatible_as_fastavro_says():
    """The old hand-written checker passed this; fastavro cannot read the old data with it."""
    renamed = _renamed_nested("Code")
    assert not _fastavro_reads(NESTED, renamed)
    errors = backward_errors(renamed, NESTED)
    assert errors and "name_mismatch" in errors[0]


def test_renamed_nested_record_with_an_alias_is_compatible():
    renamed = _renamed_nested("Code", aliases=["practiceflow.Coding"])
    assert _fastavro_reads(NESTED, renamed)
    assert backward_errors(renamed, NESTED) == []


def test_committed_typed_dicts_match_models():
    """schemas/typed.py is generated from the models like the .avsc files (practiceflow schemas export)."""
    from practiceflow.schemas import typed_gen

    assert typed_gen.TYPED_PATH.read_text() == typed_gen.render(), "run `practiceflow schemas export` and commit"
