"""`practiceflow eval <name>`: the workflows' evaluation sets, one entry per evaluation.

Each evaluation lives beside its workflow and is registered here by name -> "module:function";
the function takes the remaining command-line arguments and the settings and returns an exit
code. The registry is a plain dict so adding an evaluation is one line and importing this
module does not import every workflow.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from practiceflow.settings import Settings

EVALS: dict[str, str] = {
    "fax": "practiceflow.jobs.fax_eval:main",
    "refills": "practiceflow.processors.workflows.refill.evaluate:main",
}


def main(args: argparse.Namespace, cfg: Settings) -> int:
    target = EVALS.get(args.name)
    if target is None:
        known = ", ".join(sorted(EVALS)) or "none yet"
        print(f"unknown evaluation {args.name!r}; known: {known}", file=sys.stderr)
        return 2
    module, _, func = target.partition(":")
    run: Callable[[list[str], Settings], int] = getattr(importlib.import_module(module), func)
    return run(list(args.rest), cfg)
