"""Derive Avro schemas from the pydantic models, and load the committed .avsc files.

Why generate: one definition per record keeps the models the code validates with
and the contracts on the wire from drifting apart. The generated files are still
committed, reviewed and compatibility-checked like hand-written ones.
"""

from __future__ import annotations

import json
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from practiceflow.schemas.models import ALL_RECORDS, AvroRecord

NAMESPACE = "org.practiceflow"
AVRO_DIR = Path(__file__).resolve().parent / "avro"

# the record models' own modules (re-exported by schemas/models.py): only their docstrings become Avro docs
_MODELS_PACKAGE = "practiceflow.schemas.records."
_PRIMITIVES: dict[Any, str] = {str: "string", int: "long", float: "double", bool: "boolean", bytes: "bytes"}


def _type_of(annotation: Any, named: dict[str, dict[str, Any]]) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) != 1:
            raise TypeError(f"unsupported union {annotation}")
        return ["null", _type_of(non_null[0], named)]
    if origin is list:
        return {"type": "array", "items": _type_of(args[0], named)}
    if origin is dict:
        if args[0] is not str:
            raise TypeError("Avro maps need string keys")
        return {"type": "map", "values": _type_of(args[1], named)}
    if annotation in _PRIMITIVES:
        return _PRIMITIVES[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        name = getattr(annotation, "__avro_name__", "") or annotation.__name__
        if name in named:
            return name  # Avro allows one definition per name; later uses refer to it.
        named[name] = {}
        named[name] = _record(annotation, name, named)
        return named[name]
    raise TypeError(f"no Avro mapping for {annotation!r}")


def _record(model: type[BaseModel], name: str, named: dict[str, dict[str, Any]]) -> dict[str, Any]:
    fields = []
    for fname, info in model.model_fields.items():
        avro_type = _type_of(info.annotation, named)
        field: dict[str, Any] = {"name": fname, "type": avro_type}
        if info.description:
            field["doc"] = info.description
        default = info.get_default(call_default_factory=True, validated_data={})
        if default is not PydanticUndefined:
            field["default"] = default
        fields.append(field)
    record: dict[str, Any] = {"type": "record", "name": name, "fields": fields}
    doc = (model.__doc__ or "").strip()
    if doc and model.__module__.startswith(_MODELS_PACKAGE) and doc != BaseModel.__doc__:
        record["doc"] = " ".join(doc.split())
    return record


def avro_schema_for(model: type[AvroRecord]) -> dict[str, Any]:
    """The Avro schema (a dict) of one top-level record model."""
    schema = _record(model, model.__avro_name__, {})
    schema["namespace"] = NAMESPACE
    return schema


def export_all(directory: Path = AVRO_DIR) -> list[Path]:
    """Write one .avsc per record; what ``practiceflow schemas export`` runs."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for model in ALL_RECORDS:
        path = directory / f"{model.__avro_name__}.avsc"
        path.write_text(json.dumps(avro_schema_for(model), indent=2) + "\n")
        written.append(path)
    return written


@cache
def load_schema_text(name: str) -> str:
    """The committed .avsc text for a record name (what the registry is given)."""
    return (AVRO_DIR / f"{name}.avsc").read_text()


@cache
def load_parsed(name: str) -> dict[str, Any]:
    """The committed schema, parsed and checked by fastavro (raises if invalid)."""
    parsed = fastavro.parse_schema(json.loads(load_schema_text(name)))
    if not isinstance(parsed, dict):  # a record schema parses to a dict; anything else is a broken file
        raise TypeError(f"{name}.avsc is not a record schema")
    return parsed


def record_names() -> list[str]:
    return sorted(p.stem for p in AVRO_DIR.glob("*.avsc"))
