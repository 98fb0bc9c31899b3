"""py-spy of the worker, and the share of samples per function."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any


def start_profile(pid: int, out: Path) -> subprocess.Popen:
    """py-spy (if installed: ``pip install py-spy``) sampling the worker, collapsed stacks; stop it
    with SIGINT.

    ``--gil``: only the thread holding the GIL is sampled, i.e. where the interpreter's CPU goes.
    Without it the librdkafka delivery poller, which waits inside ``Producer.poll`` with the GIL
    released, was 19 % of a drain's samples while its callbacks were 0.5 % (session 27)."""
    spy = Path(sys.executable).with_name("py-spy")
    argv = ["record", "-p", str(pid), "--nonblocking", "--gil", "--threads", "-r", "50", "-f", "raw", "-o", str(out)]
    return subprocess.Popen(
        [str(spy), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def top_entries(path: Path, n: int = 25) -> dict[str, Any]:
    """Share of samples per function: self (the frame on top) and inclusive (anywhere on the stack)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    if not path.exists():
        return {"error": "no profile written"}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = [re.sub(r" \((.*/)?(site-packages/)?", " (", f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + k
        for f in set(frames):
            incl[f] = incl.get(f, 0) + k

    def top(d: dict[str, int]) -> list[str]:
        return [f"{v * 100 / total:5.1f}% {f}" for f, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]]

    return {"samples": total, "self": top(own), "inclusive": top(incl)}
