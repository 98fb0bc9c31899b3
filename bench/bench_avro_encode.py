"""What one Avro encode costs per normalized record of the e2e mix (issue 8's CPU budget).

``bench/proto_txn_normalize.py --stages`` found that, on a lean librdkafka hop, producing a record
costs about 3 µs and reading one about 12 µs, while building and Avro-encoding the outputs costs
about 37 µs per record written: fastavro's ``schemaless_writer`` (what ``streams/serde.py`` calls)
is the largest single cost left once Kafka I/O is in C. This measures it alone, per record type,
over the e2e benchmark's messages (``bench_e2e.mix``), with ``json.dumps`` of the same dicts as a
reference point (not an alternative: the topics' contract is Avro in the Confluent wire format).

    .venv/bin/python bench/bench_avro_encode.py [--messages 2000] [--out bench/results/avro_encode.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from e2e.messages import mix  # noqa: E402  (the e2e bench's message mix)


def per_type(values: dict[str, list[dict[str, Any]]], repeat: int = 3) -> dict[str, dict[str, float]]:
    """µs per record of ``schemaless_writer`` and of ``json.dumps``, per record type."""
    import fastavro

    from practiceflow.schemas.avro_gen import load_parsed

    out: dict[str, dict[str, float]] = {}
    for rt, vs in values.items():
        schema = load_parsed(rt)
        for v in vs[:50]:  # warm
            fastavro.schemaless_writer(io.BytesIO(), schema, v)
        t0 = time.process_time()
        for _ in range(repeat):
            for v in vs:
                buf = io.BytesIO()
                fastavro.schemaless_writer(buf, schema, v)
        avro = (time.process_time() - t0) / repeat / len(vs)
        t0 = time.process_time()
        for _ in range(repeat):
            for v in vs:
                json.dumps(v)
        js = (time.process_time() - t0) / repeat / len(vs)
        out[rt] = {
            "records": len(vs),
            "avro_us": round(avro * 1e6, 2),
            "json_dumps_us": round(js * 1e6, 2),
            "avro_bytes": len(buf.getvalue()),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "avro_encode.json")
    args = ap.parse_args(argv)

    from practiceflow.processors.dispatch import normalize_raw
    from practiceflow.processors.hl7.normalize import normalize_hl7

    msgs = mix(0, args.messages)
    values: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for practice, payload in msgs:
        mid = normalize_hl7(payload, practice, 0).message_id
        raw = {
            "practice_id": practice,
            "feed": "hl7v2",
            "message_id": mid,
            "received_at": 0,
            "content_type": "x-application/hl7-v2+er7",
            "payload": payload,
            "headers": {},
        }
        for rec in normalize_raw(raw).records:
            values[rec.record_type].append(rec.value)
    types = per_type(values)
    per_input = sum(t["avro_us"] * t["records"] for t in types.values()) / len(msgs)
    result = {
        "messages": len(msgs),
        "records_per_input": round(sum(len(v) for v in values.values()) / len(msgs), 2),
        "by_type": types,
        "avro_us_per_input": round(per_input, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
