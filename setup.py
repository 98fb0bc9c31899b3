"""Package layout only; all metadata lives in pyproject.toml.

The design card keeps ``streams/``, ``processors/``, ``schemas/`` and ``sinks/`` at
the top of the tree. They are installed as subpackages of ``practiceflow`` so that
no bare ``streams`` or ``schemas`` package ever shadows another on ``sys.path``.
"""
from setuptools import find_packages, setup

ROOTS = {
    "practiceflow": "practiceflow",
    "practiceflow.streams": "streams",
    "practiceflow.processors": "processors",
    "practiceflow.schemas": "schemas",
    "practiceflow.sinks": "sinks",
}

packages = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=ROOTS)
