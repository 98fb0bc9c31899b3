"""Clearinghouse connectors behind one interface (:class:`base.Connector`), chosen by settings.

* ``simulator`` (default): the local clearinghouse simulator
  (``practiceflow/localstack/clearinghouse.py``, started by the worker) over the CORE envelope;
* ``core``: CAQH CORE real-time MIME multipart at ``clearinghouse_url`` (:mod:`.core`);
* ``folder``: batch drop, ``clearinghouse_outbox`` / ``clearinghouse_inbox`` (:mod:`.folder`),
  where an SFTP client or server syncs.

:class:`base.EligibilityClient` wraps any of them with retries, timeouts and a per-payer
rate limit, and never raises: a check that cannot complete says why.
"""

from __future__ import annotations

from practiceflow.settings import Settings
from practiceflow.sinks.clearinghouse.base import (
    Connector,
    ConnectorAnswer,
    EligibilityClient,
    EligibilityRequest,
    Refused,
    Transient,
)
from practiceflow.sinks.clearinghouse.core import CoreConnector, payload_id_for
from practiceflow.sinks.clearinghouse.folder import FolderConnector

__all__ = [
    "Connector",
    "ConnectorAnswer",
    "CoreConnector",
    "EligibilityClient",
    "EligibilityRequest",
    "FolderConnector",
    "Refused",
    "Transient",
    "connector_from_settings",
    "client_from_settings",
    "payload_id_for",
]


def connector_from_settings(cfg: Settings) -> Connector:
    if cfg.clearinghouse == "folder":
        base = cfg.state_dir / "clearinghouse"
        return FolderConnector(cfg.clearinghouse_outbox or base / "out", cfg.clearinghouse_inbox or base / "in")
    url = cfg.clearinghouse_url or f"http://127.0.0.1:{cfg.clearinghouse_sim_port}/core/realtime"
    return CoreConnector(
        url,
        sender_id=cfg.clearinghouse_sender_id,
        receiver_id=cfg.clearinghouse_receiver_id,
        username=cfg.clearinghouse_username,
        password=cfg.clearinghouse_password.get_secret_value() if cfg.clearinghouse_password else None,
    )


def client_from_settings(cfg: Settings, connector: Connector | None = None) -> EligibilityClient:
    return EligibilityClient(
        connector or connector_from_settings(cfg),
        attempt_timeout_s=cfg.eligibility_attempt_timeout_s,
        rate_per_payer=cfg.eligibility_rate_per_payer,
        burst=max(1, int(cfg.eligibility_rate_per_payer)),
    )
