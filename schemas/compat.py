"""Backward-compatibility check for Avro schemas (new reader vs old writer).

Why hand-written: fastavro resolves schemas while reading data but offers no
schema-to-schema check, and the Python registry clients leave the check to the
server. This follows the Avro specification's "Schema Resolution" rules; the
registry (BACKWARD mode) enforces the same rule again at registration.
"""

from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}


def _kind(s: Any) -> str:
    if isinstance(s, list):
        return "union"
    if isinstance(s, dict):
        return s["type"] if isinstance(s["type"], str) else _kind(s["type"])
    return str(s)


def _named(schema: Any, names: dict[str, Any]) -> Any:
    """Collect named types and resolve references by (unqualified) name."""
    if isinstance(schema, str):
        return names.get(schema.split(".")[-1], schema)
    if isinstance(schema, dict) and schema.get("type") in ("record", "enum", "fixed"):
        names.setdefault(schema["name"].split(".")[-1], schema)
    return schema


def _collect(schema: Any, names: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for s in schema:
            _collect(s, names)
    elif isinstance(schema, dict):
        t = schema.get("type")
        if t in ("record", "enum", "fixed"):
            names.setdefault(schema["name"].split(".")[-1], schema)
        if t == "record":
            for f in schema["fields"]:
                _collect(f["type"], names)
        elif t == "array":
            _collect(schema["items"], names)
        elif t == "map":
            _collect(schema["values"], names)
        elif isinstance(t, (dict, list)):
            _collect(t, names)


def backward_errors(reader: Any, writer: Any) -> list[str]:
    """Reasons data written with ``writer`` cannot be read with ``reader`` (empty = compatible)."""
    rn: dict[str, Any] = {}
    wn: dict[str, Any] = {}
    _collect(reader, rn)
    _collect(writer, wn)
    return _check(reader, writer, rn, wn, "$", set())


def _check(
    r: Any, w: Any, rn: dict[str, Any], wn: dict[str, Any], path: str, seen: set[tuple[str, str, str]]
) -> list[str]:

    r, w = _named(r, rn), _named(w, wn)
    if isinstance(r, dict) and isinstance(r.get("type"), (dict, list)):
        r = r["type"]
    if isinstance(w, dict) and isinstance(w.get("type"), (dict, list)):
        w = w["type"]
    rk, wk = _kind(r), _kind(w)
    if wk == "union":
        errs = []
        for i, branch in enumerate(w):
            if rk == "union":
                if not any(not _check(rb, branch, rn, wn, path, seen) for rb in r):
                    errs.append(f"{path}: writer union branch {_kind(branch)} has no match in the reader union")
            else:
                errs += _check(r, branch, rn, wn, f"{path}|{i}", seen)
        return errs
    if rk == "union":
        if any(not _check(rb, w, rn, wn, path, seen) for rb in r):
            return []
        return [f"{path}: reader union has no branch for writer type {wk}"]
    if rk != wk:
        if (wk, rk) in _PROMOTIONS:
            return []
        return [f"{path}: type changed from {wk} to {rk}"]
    if rk == "record":
        key = (r["name"], w["name"], path)
        if key in seen:
            return []
        seen = seen | {key}
        wfields = {f["name"]: f for f in w["fields"]}
        for f in w["fields"]:
            for a in f.get("aliases", []):
                wfields.setdefault(a, f)
        errs = []
        for f in r["fields"]:
            wf = wfields.get(f["name"]) or next((wfields[a] for a in f.get("aliases", []) if a in wfields), None)
            if wf is None:
                if "default" not in f:
                    errs.append(f"{path}.{f['name']}: new field without a default")
                continue
            errs += _check(f["type"], wf["type"], rn, wn, f"{path}.{f['name']}", seen)
        return errs
    if rk == "array":
        return _check(r["items"], w["items"], rn, wn, f"{path}[]", seen)
    if rk == "map":
        return _check(r["values"], w["values"], rn, wn, f"{path}{{}}", seen)
    if rk == "enum":
        missing = set(w["symbols"]) - set(r["symbols"])
        if missing and "default" not in r:
            return [f"{path}: enum symbols removed: {sorted(missing)}"]
        return []
    if rk == "fixed" and r.get("size") != w.get("size"):
        return [f"{path}: fixed size changed"]
    return []
