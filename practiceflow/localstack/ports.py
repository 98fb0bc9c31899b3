"""Loopback port helpers shared by the local services."""

from __future__ import annotations

import socket
import subprocess
import time


def free_port() -> int:
    """A port the OS reports free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, deadline: float, proc: subprocess.Popen | None = None) -> bool:
    """True once something accepts on host:port; False at the deadline or if proc died."""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.2)
    return False
