"""The Avro contracts: generated from the models, valid, and backward compatible."""

from __future__ import annotations

import json
import subprocess

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


def _previous_version(path) -> dict | None:
    """The newest committed version of ``path`` whose content differs from the working tree."""
    rel = path.relative_to(REPO_ROOT).as_posix()
    current = path.read_text()
    log = subprocess.run(["git", "log", "--format=%H", "--", rel], cwd=REPO_ROOT, capture_output=True, text=True)
    for commit in log.stdout.split():
        old = subprocess.run(["git", "show", f"{commit}:{rel}"], cwd=REPO_ROOT, capture_output=True, text=True)
        if old.returncode == 0 and old.stdout != current:
            return json.loads(old.stdout)
    return None


@pytest.mark.parametrize("name", record_names())
def test_backward_compatible_with_previous_committed_version(name):
    path = AVRO_DIR / f"{name}.avsc"
    previous = _previous_version(path)
    if previous is None:
        return  # first version of this contract: nothing to be compatible with
    errors = backward_errors(json.loads(path.read_text()), previous)
    assert not errors, f"{name} breaks backward compatibility: {errors}"


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
    import io

    reader = _with_fields(*BASE["fields"], {"name": "c", "type": "string", "default": "x"})
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(BASE), {"a": "v", "b": 3})
    buf.seek(0)
    out = fastavro.schemaless_reader(buf, fastavro.parse_schema(BASE), fastavro.parse_schema(reader))
    assert out == {"a": "v", "b": 3, "c": "x"}
