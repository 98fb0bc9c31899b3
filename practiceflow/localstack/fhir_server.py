"""A real FHIR R4 server on loopback, standing in for a practice's EHR API (as the local Kafka
stands in for a production broker).

HAPI FHIR's plain RESTful server library and Jetty come from Maven Central through
``deploy/local/fhir-server/pom.xml`` (cached under ``<cache>/fhir-jars``); the tiny main in
``deploy/local/fhir-server/src`` is compiled with the machine's ``javac`` into
``<cache>/fhir-classes``. Storage is HAPI's in-memory ``HashMapResourceProvider`` (Task,
Patient, Coverage, MedicationRequest, ServiceRequest, Claim, Organization, PractitionerRole): the process is
the store, so each start is empty. The main adds what the write-back relies on and the stock
provider lacks: ``If-Match`` enforced on update, ``meta.lastUpdated`` on every version and a
``_lastUpdated`` search. Authentication is off: the tests and the sample day talk to it
without a token (the SMART Backend Services client in ``sinks/ehr_fhir.py`` is for real EHRs).

    python -m practiceflow.localstack.fhir_server --port 8090      # foreground, Ctrl-C stops
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import time
from pathlib import Path

from practiceflow.localstack.kafka import StackError
from practiceflow.localstack.ports import free_port, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[2]
FHIR_DIR = REPO_ROOT / "deploy" / "local" / "fhir-server"
MAIN_CLASS = "org.practiceflow.local.FhirServer"


def ensure_built(cache_dir: Path) -> tuple[Path, Path]:
    """Fetch the jars with Maven and compile the main with javac, once per pom + source version.

    Returns (jars dir, classes dir). Raises StackError with Maven's or javac's output on failure."""
    cache_dir = Path(cache_dir).resolve()
    jars, classes = cache_dir / "fhir-jars", cache_dir / "fhir-classes"
    pom = FHIR_DIR / "pom.xml"
    sources = sorted((FHIR_DIR / "src").rglob("*.java"))
    stamp = hashlib.sha256(pom.read_bytes() + b"".join(s.read_bytes() for s in sources)).hexdigest()
    marker = classes / ".complete"
    if marker.exists() and marker.read_text() == stamp:
        return jars, classes
    jar_marker = jars / ".complete"
    if not (jar_marker.exists() and jar_marker.read_text() == pom.read_text()):
        jars.mkdir(parents=True, exist_ok=True)
        cmd = ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={jars}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"maven could not fetch the HAPI FHIR jars:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        jar_marker.write_text(pom.read_text())
    javac = shutil.which("javac")
    if javac is None:
        raise StackError("javac not found: the local FHIR server needs a JDK (Debian: openjdk-17-jdk-headless)")
    shutil.rmtree(classes, ignore_errors=True)
    classes.mkdir(parents=True)
    proc = subprocess.run(
        [javac, "-nowarn", "-d", str(classes), "-cp", f"{jars}/*", *map(str, sources)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise StackError(f"javac could not compile the FHIR server main:\n{proc.stderr[-2000:]}")
    marker.write_text(stamp)
    return jars, classes


class FhirServerProcess:
    """The server as a child process; ``base_url`` is what a practice's ``ehr_fhir_url`` names."""

    def __init__(self, cache_dir: Path, port: int | None = None, log_file: Path | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.port = port or free_port()
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_in_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def start(self, timeout: float = 120.0) -> FhirServerProcess:
        """Build if needed, start, and wait until ``/metadata`` answers (HAPI is ready then)."""
        import httpx

        jars, classes = ensure_built(self.cache_dir)
        began = time.monotonic()
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
        java = shutil.which("java") or "java"
        # small footprint: the machine is shared with Kafka and the registry
        opts = [
            "-Xms32m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        ]
        self.proc = subprocess.Popen(
            [java, *opts, "-cp", f"{jars}/*:{classes}", MAIN_CLASS, str(self.port)], stdout=out, stderr=out
        )
        deadline = time.monotonic() + timeout
        if not wait_for_port("127.0.0.1", self.port, deadline, self.proc):
            self.stop()
            raise StackError(f"the FHIR server did not open port {self.port} within {timeout:.0f}s")
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/metadata", timeout=5).status_code == 200:
                    self.started_in_s = round(time.monotonic() - began, 1)
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        self.stop()
        raise StackError(f"the FHIR server on port {self.port} did not answer /metadata within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def main(argv: list[str] | None = None) -> None:
    from practiceflow.settings import REPO_ROOT as ROOT

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".stack" / "cache")
    args = ap.parse_args(argv)
    server = FhirServerProcess(args.cache_dir, args.port).start()
    print(f"FHIR R4 server ready in {server.started_in_s}s: {server.base_url} (in memory, auth off)", flush=True)
    try:
        assert server.proc is not None  # noqa: S101
        server.proc.wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
