"""A worker process for the crash tests: the production Pipeline, no ClickHouse sink.

Run as ``python tests/streams/crash_worker.py`` with ``PRACTICEFLOW_*`` settings in the
environment (the tests point it at their session broker). It is the same Pipeline and
Faust worker that ``practiceflow worker`` runs, minus the sink (which has its own
consumer and commit rules) so a kill -9 test on the 2-core CI machine stays small.
Faust's data folder lands in the working directory the test gives it.
"""

from __future__ import annotations

import faust

from practiceflow.settings import Settings
from practiceflow.streams.app import Pipeline


def main() -> None:
    cfg = Settings()
    assert cfg.kafka_bootstrap and cfg.schema_registry_url, "the crash worker needs a configured broker and registry"
    pipeline = Pipeline(cfg, cfg.kafka_bootstrap, cfg.schema_registry_url)
    conf = pipeline.app.conf
    # A killed member is noticed after the session timeout; keep it short so a test with
    # several kills stays CI-sized (the broker's minimum is 6 s).
    conf.broker_session_timeout = 6.0
    conf.broker_heartbeat_interval = 1.0
    pipeline.register_schemas()
    faust.Worker(pipeline.app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
