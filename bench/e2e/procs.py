"""The processes of a run: the gateways (a child process of ``bench_e2e.py --gateway``), workers, readiness."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from e2e.messages import PARTITIONS, PRACTICES

# the gateways run as `bench_e2e.py --gateway <conf>`
ENTRY = Path(__file__).resolve().parents[1] / "bench_e2e.py"


def gateway_main(conf_path: str) -> None:
    """Child process: the MLLP gateways, one plain listener per practice, sharing one core."""
    conf = json.loads(Path(conf_path).read_text())

    from practiceflow.streams.gateways.base import GatewayCore
    from practiceflow.streams.gateways.mllp import MllpGateway
    from practiceflow.streams.producer import DurableProducer
    from practiceflow.streams.serde import AvroSerde, registry_client

    async def serve() -> None:
        producer = DurableProducer(conf["bootstrap"], conf["partitions"])
        core = GatewayCore(producer, AvroSerde(registry_client(conf["registry"])), conf["prefix"], name="gateways")
        gws = []
        for practice, port in conf["ports"].items():
            gw = MllpGateway(core, practice, port=port, practices=list(conf["ports"]), max_connections_per_peer=64)
            await gw.start()
            gws.append(gw)
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for gw in gws:
            await gw.stop()
        producer.close()

    asyncio.run(serve())


class Procs:
    """The child processes of one run, stopped together."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115  # closed with the process
        proc = subprocess.Popen(argv, env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def worker_env(bootstrap: str, registry: str, prefix: str, group: str, state: Path, web_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PRACTICEFLOW_CONFIG": str(state / "none.toml"),
        "PRACTICEFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "PRACTICEFLOW_SCHEMA_REGISTRY_URL": registry,
        "PRACTICEFLOW_STATE_DIR": str(state),
        "PRACTICEFLOW_TOPIC_PREFIX": prefix,
        "PRACTICEFLOW_TOPIC_PARTITIONS": str(PARTITIONS),
        "PRACTICEFLOW_CONSUMER_GROUP": group,
        "PRACTICEFLOW_WEB_PORT": str(web_port),
        "PRACTICEFLOW_PRACTICES": json.dumps(list(PRACTICES)),
        "PRACTICEFLOW_DEFAULT_PRACTICE_ID": PRACTICES[0],
    }


def start_gateways(procs: Procs, bootstrap: str, registry: str, prefix: str) -> tuple[subprocess.Popen, dict[str, int]]:
    ports = {p: free_port() for p in PRACTICES}
    conf = procs.workdir / f"gateways-{prefix}.json"
    conf.write_text(
        json.dumps(
            {"bootstrap": bootstrap, "registry": registry, "prefix": prefix, "partitions": PARTITIONS, "ports": ports}
        )
    )
    proc = procs.spawn(f"gateways-{prefix}", [sys.executable, str(ENTRY), "--gateway", str(conf)], os.environ.copy())
    log = procs.workdir / f"gateways-{prefix}.log"
    deadline = time.monotonic() + 60
    while b"ready" not in (log.read_bytes() if log.exists() else b""):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gateways did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    return proc, ports


def start_worker(procs: Procs, name: str, env: dict[str, str]) -> subprocess.Popen:
    proc = procs.spawn(name, [sys.executable, "-m", "practiceflow.cli", "worker", "--no-sink"], env)
    wait_http(f"http://127.0.0.1:{env['PRACTICEFLOW_WEB_PORT']}/readyz", 180, proc)
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310  # loopback URL we built
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready in {timeout}s")


def normalized_count(web_port: int) -> int:
    """Messages a worker normalized, from its own /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5) as r:  # loopback
        text = r.read().decode()
    total = 0
    for m in re.finditer(r'^practiceflow_messages_total\{feed="hl7v2",stage="normalized"\} ([0-9.e+]+)$', text, re.M):
        total += int(float(m.group(1)))
    return total
