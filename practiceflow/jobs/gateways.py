"""``practiceflow gateways``: run the ingest gateways until interrupted (production shape)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl

from practiceflow.localstack.connect import endpoints
from practiceflow.settings import Settings
from practiceflow.sinks.docstore import open_document_store
from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.gateways.folder import FolderDrop
from practiceflow.streams.gateways.http import HttpGateway
from practiceflow.streams.gateways.mllp import MllpGateway
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics


def tls_context(cfg: Settings) -> ssl.SSLContext | None:
    if not cfg.mllp_tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg.mllp_tls_cert, cfg.mllp_tls_key)
    return ctx


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
    practices = set(cfg.practices)
    mllp = MllpGateway(
        core,
        cfg.mllp_practice_id or cfg.default_practice_id,
        host=cfg.gateway_host,
        port=cfg.mllp_port,
        ssl_context=tls_context(cfg),
        max_message_bytes=cfg.max_message_bytes,
    )
    http = HttpGateway(
        core,
        practices,
        docstore,
        portal_secrets=cfg.portal_secrets,
        host=cfg.gateway_host,
        port=cfg.http_port,
        max_body_bytes=cfg.max_message_bytes,
    )
    drops = FolderDrop(core, cfg.drop_dir or cfg.state_dir / "drop", practices, docstore)
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
