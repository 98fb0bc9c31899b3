"""The compiled HL7 hot path (Cython over the same ``.py`` sources, see ``setup.py``).

Two promises are checked: the compiled modules give exactly the pure-Python results
(records, warnings, rejection codes and reasons) over every message we have, mutated
ones included; and a build that no longer matches its source is never used.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from practiceflow.processors.hl7 import speedups_status, split_batch
from practiceflow.processors.hl7._speedups import is_stale
from practiceflow.sampleday.generate import build_day
from tests.fixtures import REPO_ROOT, oru_r01, shared_data_dir

# Runs in a fresh interpreter so that the module form (compiled or Python) is chosen
# at import: reads a JSON list of latin-1 strings, writes one outcome per message.
_OUTCOMES = textwrap.dedent("""
    import json, sys
    from practiceflow.processors.base import Rejected
    from practiceflow.processors.hl7 import speedups_status
    from practiceflow.processors.hl7.normalize import normalize_hl7
    out = []
    for text in json.load(open(sys.argv[1])):
        raw = text.encode("latin-1")
        for strict in (False, True):
            try:
                r = normalize_hl7(raw, "p1", 1_700_000_000_000, strict=strict)
            except Rejected as e:
                out.append(["rejected", e.reason_code, e.reason])
            else:
                out.append([r.message_id, r.message_type, r.warnings,
                            [[n.record_type, n.key, n.value] for n in r.records]])
    json.dump({"forms": speedups_status(), "outcomes": out}, open(sys.argv[2], "w"), sort_keys=True)
""")


def _inputs() -> list[bytes]:
    day = build_day(seed=3, n_patients=12)
    base = [oru_r01(), oru_r01(glucose="x1"), *day.mllp]
    data = shared_data_dir()
    if data is not None and (data / "hl7").is_dir():
        for p in sorted((data / "hl7").rglob("*.hl7")):
            raw = p.read_bytes()
            base += split_batch(raw) if p.parent.name == "batch" else [raw]
    rng = random.Random(20261127)
    mutated = []
    for raw in base:
        for _ in range(6):
            b = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(b))
                b[i : i + 1] = rng.choice([b"|", b"^", b"~", b"\\", b"&", b"\r", b"", b"\\X41\\", b" ", b'""', b"\xe9"])
            mutated.append(bytes(b))
        mutated.append(raw[: rng.randrange(len(raw))])
    return base + mutated


def _run(messages: list[bytes], tmp: Path, pure: bool) -> dict:
    src = tmp / "in.json"
    dst = tmp / ("pure.json" if pure else "default.json")
    src.write_text(json.dumps([m.decode("latin-1") for m in messages]))
    env = {k: v for k, v in os.environ.items() if k != "PRACTICEFLOW_PURE_PYTHON"}
    if pure:
        env["PRACTICEFLOW_PURE_PYTHON"] = "1"
    subprocess.run(
        [sys.executable, "-c", _OUTCOMES, str(src), str(dst)], check=True, env=env, cwd=REPO_ROOT, timeout=600
    )
    return json.loads(dst.read_text())


def test_compiled_build_is_in_use():
    """`./pf` installs a C compiler and compiles; a silent fall-back would only show as lost speed."""
    if _pure_python_requested():
        assert set(speedups_status().values()) == {"python"}
    else:
        assert speedups_status() == {"dates": "compiled", "parser": "compiled", "normalize": "compiled"}


def _pure_python_requested() -> bool:
    return os.environ.get("PRACTICEFLOW_PURE_PYTHON", "") not in ("", "0")


def test_compiled_and_python_give_identical_results(tmp_path: Path):
    if _pure_python_requested():
        # set before ./pf setup, it means no compiled build exists: comparing the Python modules
        # with themselves would prove nothing, so say so instead of passing (CI runs without it)
        why = "PRACTICEFLOW_PURE_PYTHON=1: no compiled build to compare with the Python modules"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true ships the compiled build: {why}")  # in CI a skip would prove nothing
        pytest.skip(why)
    messages = _inputs()
    assert len(messages) > 200
    pure = _run(messages, tmp_path, pure=True)
    default = _run(messages, tmp_path, pure=False)
    assert set(pure["forms"].values()) == {"python"}
    # the default form is the compiled build (./pf installs gcc and compiles); a build that
    # failed, was skipped or went stale would run Python here and compare Python with Python
    assert default["forms"] == {"dates": "compiled", "parser": "compiled", "normalize": "compiled"}
    assert len(pure["outcomes"]) == 2 * len(messages)
    for i, (a, b) in enumerate(zip(pure["outcomes"], default["outcomes"], strict=True)):
        assert a == b, f"message {i // 2} (strict={i % 2 == 1}) differs: {messages[i // 2][:80]!r}"
    kinds = {o[0] == "rejected" for o in pure["outcomes"]}
    assert kinds == {True, False}  # both paths were exercised


def test_stale_build_detection(tmp_path: Path):
    src = tmp_path / "normalize.py"
    src.write_text("x = 1\n")
    import hashlib

    good = hashlib.sha256(b"x = 1\n").hexdigest()
    assert not is_stale(src, good)
    assert is_stale(src, None)
    src.write_text("x = 2\n")
    assert is_stale(src, good)


def test_stale_module_runs_from_source():
    """A build whose recorded hash no longer matches its source is replaced by the source."""
    script = textwrap.dedent("""
        import importlib.util, json, sys
        import practiceflow.processors  # the parent package only, not hl7's __init__
        name = "practiceflow.processors.hl7._speedups"
        path = sys.argv[1]
        spec = importlib.util.spec_from_file_location(name, path)
        sp = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sp)
        real = sp._built_hashes()
        sp._built_hashes = lambda: {**real, "parser": "0" * 64}   # as if parser.py was edited
        sp.prefer_fresh()
        from practiceflow.processors.hl7 import speedups_status, parse
        parse(b"MSH|^~\\\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\\rPID|1||X\\r")
        print(json.dumps(speedups_status()))
    """)
    path = REPO_ROOT / "processors" / "hl7" / "_speedups.py"
    env = {k: v for k, v in os.environ.items() if k != "PRACTICEFLOW_PURE_PYTHON"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    forms = json.loads(out.stdout.strip().splitlines()[-1])
    assert forms["parser"] == "python"
    if speedups_status()["normalize"] == "compiled":
        assert forms["normalize"] == "compiled"  # the fresh ones stay compiled
        assert "stale" in out.stderr
