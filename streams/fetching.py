"""How long the worker's Kafka fetch may wait on the broker: the floor under every hop's latency.

Faust 0.15 creates the worker's aiokafka consumer with ``fetch_max_wait_ms=1500``
(hard-coded in ``faust/transport/drivers/aiokafka.py`` ``_create_worker_consumer``). aiokafka's
fetcher keeps ONE fetch request in flight per broker, and leaves out of it every partition
whose last fetched records the worker has not finished reading (``Fetcher.
_get_actions_per_node``). So while the worker reads a batch of ``raw.portal``, the next fetch
goes out for the other, idle partitions; the broker holds it up to ``fetch_max_wait_ms``
because none of them gets data, and a request that lands on ``raw.portal`` meanwhile is not
fetched until that long poll ends. Each consumed hop of a workflow (raw -> normalize, norm ->
refill agent, and the context barrier, which waits for the normalize agent to reach the raw
high watermark) paid up to 1.5 s this way: refill request -> work item took 5-7 s at 100/s on
a quiet machine (bench/refill_results.md).

:func:`install` gives the app a consumer whose fetcher waits at most
``worker_fetch_wait_ms`` (settings). The cost is an idle worker's fetch rate: one request per
broker per ``worker_fetch_wait_ms`` when nothing arrives, negligible for a broker.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the worker consumer's fetch wait set (module doc)."""

    fetch_max_wait_ms: int = 1500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka 0.14 passes this attribute to its Fetcher in start(), which comes after this
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


def consumer_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.Consumer]:
    """A Faust aiokafka ``Consumer`` class whose worker consumer waits at most ``fetch_max_wait_ms``."""

    thread_class = type("ConsumerThread", (_ConsumerThread,), {"fetch_max_wait_ms": int(fetch_max_wait_ms)})

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return thread_class(self, loop=self.loop, beacon=self.beacon)

    return Consumer


def install(app: faust.App, fetch_max_wait_ms: int) -> None:
    """Make ``app`` (not started yet) create its consumer with the given fetch wait."""
    app.transport.Consumer = consumer_class(fetch_max_wait_ms)  # type: ignore[misc]  # instance attr shadows the ClassVar


def fetch_wait_ms(app: faust.App) -> int | None:
    """The fetch wait of ``app``'s running worker consumer (None before it started): what a test
    and an operator check."""
    consumer = getattr(getattr(app.consumer, "_thread", None), "_consumer", None)
    fetcher = getattr(consumer, "_fetcher", None)
    return None if fetcher is None else int(fetcher._fetch_max_wait_ms)
