"""The day job's EHR write-back: the day's work items written as Tasks to a local FHIR server.

The sample day is synthetic, so it never writes to a practice's real EHR (setting
``ehr_fhir``): it starts the local HAPI FHIR server (``practiceflow/localstack/fhir_server.py``,
in memory, auth off) in the background while the day runs — its start (~10-15 s of a JVM)
overlaps the day instead of adding to it — then runs the same write-back as
``practiceflow ehr sync`` against it, and a second pass to show that a replay writes nothing.
A machine where the server cannot be built or started (no javac, no Maven) still runs the
day; the summary says why the write-back was skipped.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from practiceflow.settings import Settings

if TYPE_CHECKING:
    from practiceflow.processors.ehr.config import EhrFhirTarget


class LocalEhr:
    """The local FHIR server, started on a thread so the day does not wait for the JVM."""

    def __init__(self, cfg: Settings) -> None:
        from practiceflow.localstack.fhir_server import FhirServerProcess

        cache = Path(cfg.state_dir) / "cache"
        (Path(cfg.state_dir) / "day").mkdir(parents=True, exist_ok=True)
        self.server = FhirServerProcess(cache, log_file=Path(cfg.state_dir) / "day" / "fhir-server.log")
        self.error: str | None = None
        self.began = time.monotonic()
        self._thread = threading.Thread(target=self._start, name="local-fhir-server", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self.server.start()
        except Exception as exc:  # reported in the summary; the day goes on without the write-back
            self.error = f"{type(exc).__name__}: {str(exc)[:300]}"

    def target(self, practice: str) -> EhrFhirTarget:
        """The practice's ``ehr_fhir`` entry for this server (its port is fixed before it starts)."""
        from practiceflow.processors.ehr.config import EhrFhirTarget

        # the sample day's charts carry the demo clinic's MRN system (sampleday/generate.py): a matched
        # registration finds its chart by it (without mrn_system it would be answered failed, s19 M4)
        return EhrFhirTarget(
            base_url=self.server.base_url, auth="none", practice_name=practice, mrn_system="urn:demo-clinic:mrn"
        )

    def ready(self, timeout: float = 180.0) -> bool:
        self._thread.join(timeout)
        return self.error is None and self.server.proc is not None

    def stop(self) -> None:
        # a start still under way (a slow first build) would leave an orphaned JVM behind: wait for it
        self._thread.join(180)
        self.server.stop()


def write_back_day(ehr: LocalEhr | None, cfg: Settings, serde: Any, bootstrap: str, practice: str) -> str:
    """Write the practice's items to the local server twice (the second pass: a replay) and
    return the summary lines."""
    if ehr is None:
        return "  EHR write-back: off (--no-ehr)"
    if not ehr.ready():
        return f"  EHR write-back: skipped, the local FHIR server did not start ({ehr.error or 'timeout'})"
    from practiceflow.jobs.ehr import sync_practice
    from practiceflow.sinks.ehr_fhir import FhirClient

    target = ehr.target(practice)
    with FhirClient(target) as client:
        t0 = time.monotonic()
        first = sync_practice(cfg, serde, bootstrap, practice, client, target)
        took = time.monotonic() - t0
        again = sync_practice(cfg, serde, bootstrap, practice, client, target)
    lines = [
        f"\n  EHR write-back (local HAPI FHIR R4 at {ehr.server.base_url}, in memory, auth off; "
        f"ready {ehr.server.started_in_s}s after start): {first.tasks_written} Tasks written, "
        f"{first.drafts_written} drafts written, in {took:.1f}s",
        f"    replayed: {again.tasks_written} Tasks and {again.drafts_written + again.signed_written} drafts "
        f"written again ({again.tasks_unchanged} unchanged)",
    ]
    if first.orders_updated or first.orders_by_hand:
        lines.append(
            f"    authorization numbers: {first.orders_updated} attached to the EHR's orders, "
            f"{first.orders_by_hand} handed to the billing office (not writable; the reason is on each billing item)"
        )
    lines += [f"    failed: {why}" for why in first.failed[:5]]
    return "\n".join(lines)
