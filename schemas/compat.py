"""Backward-compatibility check for Avro schemas (new reader vs old writer).

Why the ``avro`` package: Apache Avro's own ``ReaderWriterCompatibilityChecker`` is the
Python port of the Java ``SchemaCompatibility`` class that schema registries run, so
our test and the registry's BACKWARD mode apply the same rules. The hand-written
checker this replaces compared named types by their unqualified name only after
resolving references by name, and so passed a renamed nested record that fastavro
then refused to read ("schema mismatch"); the library checks record names (and
their aliases) at every level, as the Avro specification's "Schema Resolution" asks.
"""

from __future__ import annotations

import json
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType


def _parse(schema: Any) -> avro.schema.Schema:
    return avro.schema.parse(schema if isinstance(schema, str) else json.dumps(schema))


def backward_errors(reader: Any, writer: Any) -> list[str]:
    """Reasons data written with ``writer`` cannot be read with ``reader`` (empty = compatible).

    Both are Avro schemas as parsed JSON (dicts/lists/strings) or JSON text.
    """
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]  # avro ships no annotations here
    result = checker.get_compatibility(_parse(reader), _parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted({i.value for i in result.incompatibilities}))
    return [f"{kinds} at {', '.join(sorted(result.locations))}: {'; '.join(sorted(result.messages))}"]
