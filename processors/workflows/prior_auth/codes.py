"""ICD-10-CM validation against the official code set (``simple-icd-10-cm`` ships the CMS files).

Why a package and not a regex: a code can look right and not exist (``M54.9`` exists,
``M54.0`` does not in recent releases), and a payer rejects a non-billable category
(``M54.1`` without its fifth character). The package bundles the CMS tabular list of one
release (April 2026 in 1.5.0); importing it parses that XML (~2-3 CPU-s), so it is loaded
on first use, not at import.

The worker loads it while it registers its agents, before it joins its group, and that
parse was a quarter of a restart (issue 8: a restarted worker resumes within 10 s). So the
worker keeps what the checks need -- every code of the set with whether it is billable and
its description -- in a JSON snapshot under its state folder, named by the package version:
the first start builds it from the package, later starts read it (~0.2 s). A snapshot that
does not read back is rebuilt from the package, never trusted in part.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1  # bump when the snapshot's shape changes

#: dotted code -> (billable, description); every item of the set (chapters, blocks, categories, codes)
CodeTable = dict[str, tuple[bool, str]]
_table: CodeTable | None = None


@cache
def _cm() -> ModuleType:
    # lazy: importing parses the code set; 1.5.0 reads its data with a deprecated importlib call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm

    module: ModuleType = simple_icd_10_cm
    return module


def _from_package() -> CodeTable:
    cm = _cm()
    return {c: (bool(cm.is_leaf(c)), str(cm.get_description(c))) for c in cm.get_all_codes(True)}


def snapshot_path(cache_dir: Path) -> Path:
    return Path(cache_dir) / f"icd10cm-{version('simple-icd-10-cm')}-v{SNAPSHOT_FORMAT}.json"


def _read_snapshot(path: Path) -> CodeTable | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        table = {str(k): (bool(v[0]), str(v[1])) for k, v in data["codes"].items()}
        whole = data["package"] == code_set_release() and data["count"] == len(table)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        log.warning(
            "ICD-10-CM snapshot %s not usable (%s); rebuilding it from the package", path.name, type(exc).__name__
        )
        return None
    if not whole or not table:
        log.warning("ICD-10-CM snapshot %s is from another package or incomplete; rebuilding it", path.name)
        return None
    return table


def _write_snapshot(path: Path, table: CodeTable) -> None:
    """Written to a temporary file and renamed: two workers starting together never leave half a file."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".icd10cm-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            doc = {"package": code_set_release(), "count": len(table), "codes": table}
            json.dump(doc, out, separators=(",", ":"))
        os.chmod(tmp, 0o644)  # public reference data, like the package it came from
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:  # a read-only state folder: the worker still runs, it just parses again next time
        log.warning("ICD-10-CM snapshot not written (%s); the next start parses the package again", exc)
    finally:
        if tmp is not None:  # a failed write (a full disk) leaves no partial file behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def load_code_set(cache_dir: Path | None = None) -> CodeTable:
    """Load the code set now (the worker calls this while it registers, before it joins its
    group): the first check would otherwise spend ~3 CPU-s inside an agent, blocking the
    event loop long enough to miss heartbeats and set off a rebalance on a busy machine.
    With ``cache_dir``, from the snapshot there when it exists, else from the package (and the
    snapshot is written for the next start). Loaded once per process; returns the table."""
    global _table
    table = _table
    if table is None:
        path = snapshot_path(cache_dir) if cache_dir is not None else None
        table = _read_snapshot(path) if path is not None else None
        if table is None:
            table = _from_package()
            if path is not None:
                _write_snapshot(path, table)
        _table = table
    return table


@dataclass(frozen=True)
class CodeCheck:
    code: str
    valid: bool  # in the code set (a category or a billable code)
    billable: bool  # a leaf: what a claim or a 278 may carry
    description: str | None


def code_set_release() -> str:
    """Which release of the package (and so of the CMS code set) checked the codes."""
    return f"simple-icd-10-cm {version('simple-icd-10-cm')}"


@cache
def check(code: str) -> CodeCheck:
    """Whether ``code`` (with or without its dot) is in ICD-10-CM, and billable (the
    package's ``is_valid_item``: the item as written, or with a dot after its third character)."""
    codes = load_code_set()
    c = code.strip().upper()
    hit = codes.get(c)
    if hit is None and len(c) >= 4:
        hit = codes.get(f"{c[:3]}.{c[3:]}")
    if hit is None:
        return CodeCheck(c, False, False, None)
    return CodeCheck(c, True, hit[0], hit[1])


def dotted(code: str) -> str:
    """``M5416`` -> ``M54.16`` (the form letters and FHIR use); dotted input unchanged."""
    c = code.strip().upper()
    if "." in c or len(c) <= 3:
        return c
    return f"{c[:3]}.{c[3:]}"
