"""Package layout and the optional compiled HL7 hot path; all metadata lives in pyproject.toml.

The design card keeps ``streams/``, ``processors/``, ``schemas/`` and ``sinks/`` at
the top of the tree. They are installed as subpackages of ``practiceflow`` so that
no bare ``streams`` or ``schemas`` package ever shadows another on ``sys.path``.

Speed-ups: the HL7 parser and normalizer are plain Python that Cython also compiles
as it stands (no ``.pyx``, no second copy of the logic). Compiling takes the 20-segment
ORU from ~8,500 to ~11,500 messages/s per core on the 2-core reference VM
(``bench/RESULTS.md``). It is optional: without Cython or a C compiler, or with
``PRACTICEFLOW_PURE_PYTHON=1``, the same modules run as Python. The source hashes
written beside the extensions let ``processors/hl7/_speedups.py`` refuse a stale build.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from setuptools import find_packages, setup

ROOTS = {
    "practiceflow": "practiceflow",
    "practiceflow.streams": "streams",
    "practiceflow.processors": "processors",
    "practiceflow.schemas": "schemas",
    "practiceflow.sinks": "sinks",
}
# Compiled in this order of dependency; keep in step with processors/hl7/_speedups.py.
COMPILED = ("dates", "parser", "normalize")
HL7_DIR = Path("processors/hl7")


def _extensions() -> list:
    if os.environ.get("PRACTICEFLOW_PURE_PYTHON"):
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        return []
    hashes = {m: hashlib.sha256((HL7_DIR / f"{m}.py").read_bytes()).hexdigest() for m in COMPILED}
    (HL7_DIR / "_compiled_sources.json").write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    # -O2 without debug info: the same speed as the interpreter's default -O3 -g within
    # noise, in a third of the compile time (a fresh clone's first set-up waits for it)
    exts = [Extension(f"practiceflow.processors.hl7.{m}", [str(HL7_DIR / f"{m}.py")], optional=True,
                      extra_compile_args=["-O2", "-g0"]) for m in COMPILED]
    return cythonize(
        exts,
        build_dir="build/cython",
        quiet=True,
        # annotation_typing: the annotations are honest (tests run on the compiled build)
        compiler_directives={"language_level": 3, "annotation_typing": True, "binding": False,
                             "infer_types": True},
    )


packages = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=ROOTS, ext_modules=_extensions(),
      options={"build_ext": {"parallel": os.cpu_count() or 1}})
