"""ICD-10-CM validation against the official code set (``simple-icd-10-cm`` ships the CMS files).

Why a package and not a regex: a code can look right and not exist (``M54.9`` exists,
``M54.0`` does not in recent releases), and a payer rejects a non-billable category
(``M54.1`` without its fifth character). The package bundles the CMS tabular list of one
release (April 2026 in 1.5.0); loading it parses that XML once (~3 CPU-s), so it is loaded
on first use and cached, not at import.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from types import ModuleType


@cache
def _cm() -> ModuleType:
    # lazy: importing parses the code set; 1.5.0 reads its data with a deprecated importlib call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm

    module: ModuleType = simple_icd_10_cm
    return module


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
    """Whether ``code`` (with or without its dot) is in ICD-10-CM, and billable."""
    cm = _cm()
    c = code.strip().upper()
    try:
        valid = bool(cm.is_valid_item(c))
    except Exception:  # the package raises on malformed input
        valid = False
    if not valid:
        return CodeCheck(c, False, False, None)
    return CodeCheck(c, True, bool(cm.is_leaf(c)), str(cm.get_description(c)))


def dotted(code: str) -> str:
    """``M5416`` -> ``M54.16`` (the form letters and FHIR use); dotted input unchanged."""
    c = code.strip().upper()
    if "." in c or len(c) <= 3:
        return c
    return f"{c[:3]}.{c[3:]}"
