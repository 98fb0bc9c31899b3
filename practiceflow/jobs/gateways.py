"""``practiceflow gateways``: run the ingest gateways until interrupted (production shape)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl

from practiceflow.localstack.connect import endpoints
from practiceflow.settings import Settings
from practiceflow.sinks.docstore import DocumentStore, open_document_store
from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.gateways.folder import FolderDrop
from practiceflow.streams.gateways.http import HttpGateway
from practiceflow.streams.gateways.limits import ByteBudget
from practiceflow.streams.gateways.mllp import MllpGateway
from practiceflow.streams.gateways.replay import ReplayGuard
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics


def _refuse_half_configured_tls(cfg: Settings) -> None:
    """Raise rather than fall back to plaintext (settings built by ``model_copy`` skip the validator)."""
    problems = cfg.mllp_tls_problems()
    if problems:
        raise ValueError("MLLP TLS half-configured: " + "; ".join(problems))


def tls_context(cfg: Settings) -> ssl.SSLContext | None:
    """The MLLP listener's TLS; with ``mllp_tls_client_ca`` a client certificate from that CA is required."""
    _refuse_half_configured_tls(cfg)
    if not cfg.mllp_tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.mllp_tls_cert, cfg.mllp_tls_key)
    if cfg.mllp_tls_client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(cfg.mllp_tls_client_ca))
    return ctx


def mllp_gateway(cfg: Settings, core: GatewayCore, *, port: int | None = None) -> MllpGateway:
    """The MLLP listener as the settings describe it (mutual TLS when a client CA is configured)."""
    _refuse_half_configured_tls(cfg)
    mtls = bool(cfg.mllp_tls_cert and cfg.mllp_tls_client_ca)
    return MllpGateway(
        core,
        cfg.mllp_practice_id or cfg.default_practice_id,
        host=cfg.gateway_host,
        port=cfg.mllp_port if port is None else port,
        ssl_context=tls_context(cfg),
        max_message_bytes=cfg.max_message_bytes,
        client_practices=cfg.mllp_client_practices if mtls else None,
        practices=cfg.practices,
        idle_timeout_s=cfg.mllp_idle_timeout_s,
        frame_timeout_s=cfg.mllp_frame_timeout_s,
        max_connections=cfg.mllp_max_connections,
        max_connections_per_peer=cfg.mllp_max_connections_per_peer,
    )


def http_gateway(cfg: Settings, core: GatewayCore, docstore: DocumentStore, *, port: int | None = None) -> HttpGateway:
    """The HTTP gateway as the settings describe it (credentials, replay file, body bounds)."""
    return HttpGateway(
        core,
        set(cfg.practices),
        docstore,
        tokens=cfg.gateway_tokens,
        portal_secrets=cfg.portal_secrets,
        host=cfg.gateway_host,
        port=cfg.http_port if port is None else port,
        max_body_bytes=cfg.max_message_bytes,
        signature_tolerance_s=cfg.signature_tolerance_s,
        replay=ReplayGuard(cfg.replay_state_file),
        max_concurrent_bodies=cfg.http_max_concurrent_bodies,
        body_timeout_s=cfg.http_body_timeout_s,
    )


async def serve(cfg: Settings, bootstrap: str, registry_url: str) -> None:
    create_topics(bootstrap, cfg.topic_prefix, cfg.topic_partitions, cfg.topic_replication)
    producer = DurableProducer(bootstrap, cfg.topic_partitions)
    docstore = open_document_store(cfg.documents_uri, **cfg.document_store_options)
    core = GatewayCore(
        producer,
        AvroSerde(registry_client(registry_url)),
        cfg.topic_prefix,
        name="gateways",
        docstore=docstore,
        claim_check_bytes=cfg.claim_check_bytes,
    )
    core.read_budget = ByteBudget(cfg.read_buffer_bytes)
    mllp = mllp_gateway(cfg, core)
    http = http_gateway(cfg, core, docstore)
    drops = FolderDrop(
        core, cfg.drop_dir or cfg.state_dir / "drop", set(cfg.practices), docstore, max_file_bytes=cfg.max_message_bytes
    )
    print(
        f"MLLP on {cfg.gateway_host}:{await mllp.start()}, HTTP on {cfg.gateway_host}:{await http.start()}, "
        f"folder drops under {drops.root}"
    )
    await drops.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await drops.stop()
    await http.stop()
    await mllp.stop()
    producer.close()


def main(args: argparse.Namespace, cfg: Settings) -> int:
    with endpoints(cfg, autostart=False) as ep:
        asyncio.run(serve(cfg, ep.bootstrap, ep.registry_url))
    return 0
