"""Use the compiled HL7 modules only when they were built from the sources beside them.

``setup.py`` may compile ``dates``, ``parser`` and ``normalize`` with Cython (same
source, ~35 % faster). Python's import system prefers an extension module over the
``.py`` of the same name, so after an edit a stale build would silently run the old
code. :func:`prefer_fresh` runs before those modules are first imported: for each one
whose build does not match the current source hash it loads the ``.py`` instead (and
logs why), so an edited checkout always runs what it shows. ``PRACTICEFLOW_PURE_PYTHON=1``
(at build or at run time) means Python only.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

COMPILED = ("dates", "parser", "normalize")  # import order: each only needs earlier ones
_HERE = Path(__file__).resolve().parent
_PACKAGE = __name__.rpartition(".")[0]


def _built_hashes() -> dict[str, str]:
    try:
        hashes = json.loads((_HERE / "_compiled_sources.json").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in hashes.items()} if isinstance(hashes, dict) else {}


def _extension_path(module: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = _HERE / f"{module}{suffix}"
        if p.exists():
            return p
    return None


def is_stale(source: Path, built_hash: str | None) -> bool:
    """True when the extension was not built from this exact source text."""
    return built_hash != hashlib.sha256(source.read_bytes()).hexdigest()


def prefer_fresh() -> None:
    pure = os.environ.get("PRACTICEFLOW_PURE_PYTHON", "") not in ("", "0")
    built = _built_hashes()
    for module in COMPILED:
        fullname = f"{_PACKAGE}.{module}"
        if fullname in sys.modules or _extension_path(module) is None:
            continue
        source = _HERE / f"{module}.py"
        if not source.exists():  # an install that ships only the extension
            continue
        if not pure:
            if not is_stale(source, built.get(module)):
                continue
            log.warning(
                "practiceflow: compiled %s is stale (source changed since the build); "
                "running the Python source. Rebuild with ./pf setup.",
                module,
            )
        spec = importlib.util.spec_from_file_location(fullname, source)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {source}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[fullname] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[fullname]
            raise
        package = sys.modules.get(_PACKAGE)
        if package is not None:  # as the import system would: hl7.parser is an attribute too
            setattr(package, module, mod)


def status() -> dict[str, str]:
    """Which form each hot-path module runs as: "compiled" or "python" (for bench and logs)."""
    out = {}
    for module in COMPILED:
        mod = sys.modules.get(f"{_PACKAGE}.{module}")
        if mod is None:
            mod = importlib.import_module(f"{_PACKAGE}.{module}")
        out[module] = "python" if str(getattr(mod, "__file__", "")).endswith(".py") else "compiled"
    return out
