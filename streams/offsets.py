"""Our own offset commits for the topics whose every message must end in an outcome.

Why not Faust's commits: Faust commits the offsets its streams *acked*, and its
bookkeeping acks messages that were never processed (faust-streaming 0.15, read in
``faust/streams.py`` and ``faust/transport/consumer.py``):

* ``Stream._py_aiter`` skips a message whose ``generation_id`` is older than the
  consumer's, or that arrives while flow control is paused (a rebalance), and then
  **acks** it (``value is skipped_value`` → ``event.ack()``). The skip assumes the
  rebalance's seek will deliver the message again, but the ack lands in the new
  generation's ``_acked`` list, which ``_new_offset`` then commits past.
* ``Consumer._drain_messages`` records the offset of each delivered message as the
  partition's read offset *after* handing it to the stream; a stale message delivered
  across the seek overwrites the seek's read offset, and the re-fetched copies of the
  skipped messages are then dropped as "already read" (``DROPPED MESSAGE ROFF``). An
  offset jump is also filled in as acked (``_add_gap``), meant for compacted topics.
* ``_new_offset`` allows one un-acked offset at the head (``min(acked) - committed > 1``)
  and skips the check altogether when the committed offset is 0 or unknown.
* ``ProducerBuffer.flush`` (which the commit awaits for table changelog writes) gives up
  after 0.1 s without a message sent and reports the buffer flushed.

Issue 8's run lost 16 consecutive messages of one partition this way: skipped during
the restarted worker's rebalance, acked, dropped on re-fetch, committed past.

So the topics that carry inputs (raw and retry topics, ``audit.in``) are declared
with ``acks=False``, which keeps them out of all of Faust's ack and commit machinery,
and their agents commit through :class:`OffsetLedger`: an offset is committed only
when every message before it on its partition was processed *and* the outputs of
that processing were confirmed by the broker. A message that Faust skipped or dropped
shows up as a gap (a later offset arrives first); nothing after the gap is processed
or committed, and the partition is sought back to the gap so it is delivered again.

A gap is only seen when a later message arrives. A message skipped or dropped at the
**tail** of a partition that then receives nothing new (the last fax of the day, skipped
while the restarted worker's group rebalanced once more) would wait for the next message,
for ever on a quiet feed. So each committer also probes its partitions when its agent has
been idle a while (:meth:`Committer.probe_tails`, every ``TAIL_PROBE_SECONDS``): a partition
whose next offset to process is below the high-water mark the consumer last fetched is
sought back to that offset, as a gap is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
from confluent_kafka import Consumer as _CkConsumer, TopicPartition as _CkTP
from faust.serializers.codecs import Codec
from faust.streams import _current_event
from faust.types import TP

from practiceflow.schemas.headers import SEQ_HEADER, SOURCE_HEADER, seq_header, source_header
from practiceflow.streams.producer import Delivered, OutputProducer

log = logging.getLogger("practiceflow.worker.offsets")

RESEEK_SECONDS = 2.0  # a gap still open this long after a seek is sought again
TAIL_PROBE_SECONDS = 5.0  # how often the worker runs every committer's tail probe
TAIL_IDLE_SECONDS = 10.0  # an agent that took no message this long, with messages left, lost them
TAIL_TRIES = 3  # seeks to the same offset at the same high-water mark before the probe lets it be


@contextlib.contextmanager
def in_event(event: faust.types.EventT) -> Iterator[None]:
    """Make ``event`` the current event while a table is read or written.

    Faust tables find the changelog partition, and the RocksDB store the partition's
    database, from the current event. A batch handler runs outside the stream's
    iteration, so it sets the event of the message it is working on.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


async def confirmed(futures: list[Any]) -> list[Any]:
    """Wait for every delivery future (Faust's producer); raise if one failed. Shielded: when
    the agent is cancelled (shutdown) the sends still complete and Faust's callbacks find them
    pending."""
    if not futures:
        return []
    return list(await asyncio.gather(*(asyncio.shield(f) for f in futures)))


class Outbox:
    """The sends of one batch step; :meth:`confirm` waits until the broker has every one.

    The commit rule is built from Outboxes: a batch sends its outputs through one and
    confirms them, then writes its table entries (de-dup marks, audit heads) through a
    second one and confirms those, and only then commits its input offsets
    (:class:`Committer`). Workflow agents reuse it the same way.

    Stable API::

        outbox = pipeline.outbox()          # or Outbox(producer); Outbox() = Faust's producer
        await outbox.send(topic, key, value, partition)   # a Faust topic, its codec encodes
        outbox.table_write(table, event, key, value)      # table entry + its changelog record
        outbox.after(pipeline._count, "x")  # runs once confirm() has every send, never before
        written = await outbox.confirm()    # per send, in order: .topic/.partition/.offset
        with outbox.made_from(topic, partition, offset):  # sends inside name their input
            ...

    With an :class:`~practiceflow.streams.producer.OutputProducer` (what ``pipeline.outbox()``
    gives) the records go through librdkafka: same bytes (the topic's own key and value
    serializers), same partitions, a fraction of aiokafka's CPU per message. Table writes then
    also record the changelog offset in the store (what Faust's own ``send_changelog`` callback
    does), so a restarted worker reads only the changelog written since. ``Outbox()`` without
    a producer keeps the old path (Faust's ``topic.send`` / ``table.send_changelog``).

    Inside :meth:`made_from`, every send carries the input it was made from and its number
    among that input's outputs (``pf-source`` and ``pf-seq`` headers, ``schemas/headers.py``):
    a batch handled again after a crash sends the same outputs at new offsets, and that name is
    how the ClickHouse sink writes their rows once.
    """

    def __init__(self, producer: OutputProducer | None = None) -> None:
        self._producer = producer
        # the input being handled (made_from): its pf-source header, and whether sends are numbered
        self._origin: tuple[tuple[str, bytes], bool] | None = None
        self._origin_seq = 0
        self._pending: list[asyncio.Future[Any]] = []
        self._ticket: Any = None
        self._changelogs: dict[int, tuple[Any, TP]] = {}  # send index -> (table, changelog TP)
        self._encoders: dict[int, tuple[str, Any]] = {}
        self._after: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def after(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` once :meth:`confirm` has every send, never before: a counter that
        a reader (a test, the day's summary, ``/readyz``) waits on then promises the records are in
        Kafka. Counted before the confirm, a reader could wake on the count and read the topic
        a moment before the item reached it. Dropped when the confirm raises (the batch is
        retried and counts again)."""
        self._after.append((fn, args))

    @contextlib.contextmanager
    def made_from(self, topic: str, partition: int, offset: int, *, numbered: bool = True) -> Iterator[None]:
        """Name the input (its Kafka position) that the sends inside are the outputs of, and, when
        ``numbered``, each send's number among them. The numbering restarts for each input, so it
        depends only on what the handler sends for that input, in order: a handler that sends the
        same outputs for the same input re-sends the same numbers, and the ClickHouse sink writes
        such copies once. A handler that may decide differently on a second pass (the fax feed's
        OCR under a time limit) leaves ``numbered`` off: its copies are then rows of their own, and
        the newest wins in ``FINAL`` as in the compacted topics. A caller's own ``pf-source`` or
        ``pf-seq`` header is replaced inside."""
        outer = (self._origin, self._origin_seq)
        source = source_header(topic, partition, offset)[0]
        self._origin, self._origin_seq = (source, numbered), 0
        try:
            yield
        finally:
            self._origin, self._origin_seq = outer

    def _stamped(self, headers: list[tuple[str, bytes]] | None) -> list[tuple[str, bytes]] | None:
        if self._origin is None:
            return headers
        source, numbered = self._origin
        own = [source]
        if numbered:
            seq, self._origin_seq = self._origin_seq, self._origin_seq + 1
            own.append(seq_header(seq))
        if not headers:
            return own
        return [*(h for h in headers if h[0] not in (SOURCE_HEADER, SEQ_HEADER)), *own]

    @staticmethod
    def _run_after(after: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
        for fn, args in after:
            fn(*args)

    async def send(
        self,
        topic: faust.TopicT,
        key: str,
        value: dict[str, Any],
        partition: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue one record (``headers``: Kafka record headers; inside :meth:`made_from` the
        input's ``pf-source``/``pf-seq`` are added)."""
        headers = self._stamped(headers)
        if self._producer is None:
            # headers only when given (a copy: Faust keeps the caller's list and may merge into it)
            if headers:
                fut = await topic.send(key=key.encode(), value=value, partition=partition, headers=list(headers))
            else:
                fut = await topic.send(key=key.encode(), value=value, partition=partition)
            self._pending.append(fut)  # type: ignore[arg-type]
            return
        enc = self._encoders.get(id(topic))
        if enc is None:
            enc = self._encoders[id(topic)] = _encoder(topic)
        name, dumps = enc
        if self._ticket is None:
            self._ticket = self._producer.ticket()
        self._producer.produce(self._ticket, name, key.encode(), dumps(value), partition, headers)

    def table_write(self, table: Any, event: Any, key: str, value: Any) -> None:
        """Set ``table[key] = value`` in the store and send its changelog record (both in the
        context of ``event``, whose partition is the table partition); confirmed with the rest."""
        partition = event.message.partition
        with in_event(event):
            if value is None:
                with contextlib.suppress(KeyError):
                    del table.data[key]
            else:
                table.data[key] = value
        if self._producer is None:
            # a delete is a tombstone: the table's json serializer would write b"null"
            raw = "raw" if value is None else None  # None: the table's own serializer
            self._pending.append(table.send_changelog(partition, key, value, value_serializer=raw))
            return
        topic = table.changelog_topic
        kbytes, _ = topic.prepare_key(key, table.key_serializer)
        vbytes = None if value is None else topic.prepare_value(value, table.value_serializer)[0]
        if self._ticket is None:
            self._ticket = self._producer.ticket()
        name = topic.get_topic_name()
        self._changelogs[len(self._ticket.results)] = (table, TP(name, partition))
        self._producer.produce(self._ticket, name, kbytes, vbytes, partition)

    async def confirm(self) -> list[Any]:
        """Metadata of every send, in order; raises if any was not written (and then drops the
        :meth:`after` callbacks: a later confirm of the same box never runs a failed batch's)."""
        after, self._after = self._after, []
        if self._producer is None:
            pending, self._pending = self._pending, []
            done = await confirmed(pending)
            self._run_after(after)
            return done
        ticket, self._ticket = self._ticket, None
        changelogs, self._changelogs = self._changelogs, {}
        if ticket is None:
            self._run_after(after)
            return []
        written: list[Delivered] = await ticket.wait()
        persisted: dict[tuple[int, TP], tuple[Any, int]] = {}
        for idx, (table, tp) in changelogs.items():
            key = (id(table), tp)
            offset = written[idx].offset
            if key not in persisted or persisted[key][1] < offset:
                persisted[key] = (table, offset)
        for (_tid, tp), (table, offset) in persisted.items():
            # what Faust's _on_changelog_sent does: the store remembers how far its changelog
            # is applied, so a restart replays only what came after. Several agents' boxes can
            # write one table partition (the normalizers and the context agent both write the
            # context tables): one confirmed later with a lower offset moves it back, which only
            # makes a restart replay a little more (the store holds the values already)
            table.data.set_persisted_offset(tp, offset)
        self._run_after(after)
        return written


def _encoder(topic: faust.TopicT) -> tuple[str, Any]:
    """(topic name, value -> bytes) with the topic's own value serializer; an Avro codec
    (``streams/serde.py``) is called directly, anything else through Faust's schema."""
    codec = topic.value_serializer  # type: ignore[attr-defined]  # faust's Topic has it; TopicT does not declare it
    if isinstance(codec, Codec):
        return topic.get_topic_name(), codec.dumps

    def dumps(value: Any) -> bytes:
        return topic.prepare_value(value, codec)[0]

    return topic.get_topic_name(), dumps


class OffsetLedger:
    """Which offsets of each partition are done, and how far that allows a commit (pure).

    ``start`` sets a partition's base (its committed offset). ``done`` records a processed
    offset. ``expected`` is the next offset that must be processed: the base advanced over
    the contiguous done offsets. ``committable`` returns the partitions whose expected
    offset moved since their last commit.
    """

    def __init__(self) -> None:
        self._next: dict[TP, int] = {}
        self._done: dict[TP, set[int]] = {}
        self._committed: dict[TP, int] = {}

    def known(self, tp: TP) -> bool:
        return tp in self._next

    def start(self, tp: TP, committed: int) -> None:
        self._next[tp] = committed
        self._done[tp] = set()
        self._committed[tp] = committed

    def forget_all(self) -> None:
        self._next.clear()
        self._done.clear()
        self._committed.clear()

    def expected(self, tp: TP) -> int:
        return self._next[tp]

    def done(self, tp: TP, offset: int) -> None:
        nxt = self._next[tp]
        if offset < nxt:
            return
        done = self._done[tp]
        done.add(offset)
        while nxt in done:
            done.discard(nxt)
            nxt += 1
        self._next[tp] = nxt

    def committable(self) -> dict[TP, int]:
        return {tp: nxt for tp, nxt in self._next.items() if nxt > self._committed.get(tp, -1)}

    def committed(self, offsets: dict[TP, int]) -> None:
        for tp, off in offsets.items():
            if tp in self._committed:
                self._committed[tp] = max(self._committed[tp], off)


class CommittedOffsets:
    """Reads a group's committed offsets with a plain client that never joins the group.

    Used once per rebalance generation to set each partition's base; the member's own
    consumer (aiokafka, in Faust's consumer thread) is not called from the agents.
    """

    def __init__(self, bootstrap: str, group: str) -> None:
        self._consumer = _CkConsumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "client.id": f"{group}-offsets",
            }
        )
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="committed-offsets")
        #: every Committer reading through this client (one per agent): the worker's tail probe
        #: timer runs them all (streams/app.py)
        self.committers: list[Committer] = []

    def _read(self, tps: list[TP]) -> dict[TP, int]:
        return {tp: start for tp, (start, _high) in self._read_positions(tps).items()}

    def _read_positions(self, tps: list[TP]) -> dict[TP, tuple[int, int]]:
        got = self._consumer.committed([_CkTP(tp.topic, tp.partition) for tp in tps], timeout=30)
        out: dict[TP, tuple[int, int]] = {}
        for ck in got:
            tp = TP(ck.topic, ck.partition)
            low, high = self._consumer.get_watermark_offsets(_CkTP(ck.topic, ck.partition), timeout=30)
            # Nothing committed yet: the consumer starts at the earliest offset. Committed below
            # the log start (retention deleted those records while no worker ran): the consumer's
            # reset also lands on the earliest offset, and a base below it would read as a gap
            # that no seek can fill, stalling the partition for good.
            out[tp] = (max(ck.offset, low) if ck.offset >= 0 else low, high)
            if 0 <= ck.offset < low:
                log.warning("%s: committed offset %s is below the log start %s; starting there", tp, ck.offset, low)
        return out

    async def read(self, tps: list[TP]) -> dict[TP, int]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read, tps)

    async def read_positions(self, tps: list[TP]) -> dict[TP, tuple[int, int]]:
        """Each partition's (committed offset as :meth:`read` gives it, high-water mark), both from
        the broker. The health probe and the lag gauge use it: the high-water mark comes with the
        watermark read :meth:`read` makes anyway, and unlike the member consumer's it is known
        before the first fetch (streams/health.py)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read_positions, tps)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        with contextlib.suppress(Exception):
            self._consumer.close()


class Committer:
    """Per agent: the ledger, its generation, and the commits and seeks it asks Faust for."""

    def __init__(self, app: faust.App, offsets: CommittedOffsets, name: str, topics: Iterable[str] = ()) -> None:
        """``topics``: the names of the topics the agent reads, which :meth:`probe_tails` watches
        (an agent's Faust topic gives them as ``topic.topics``)."""
        self.app = app
        self.offsets = offsets
        self.name = name
        self.topics = frozenset(topics)
        self.ledger = OffsetLedger()
        self.generation: int | None = None
        self._gaps: dict[TP, tuple[int, float]] = {}  # partition -> (offset sought back to, when)
        self._watchdog: asyncio.Future[None] | None = None
        self._busy = False  # a batch is admitted and not yet committed
        self._last_taken = time.monotonic()  # when the agent last handed this committer a batch
        self._tail_seeks: dict[TP, tuple[int, int, int]] = {}  # tp -> (offset, high, seeks)
        offsets.committers.append(self)

    async def admit(self, events: list[Any]) -> list[Any]:
        """The events of this batch that are next in line on their partitions.

        Drops events of an older generation (the rebalance's seek delivers them again),
        starts partitions new to this generation at their committed offset, skips events
        already done, and at a gap keeps nothing after it and seeks back to the gap.
        """
        if events:
            self._last_taken = time.monotonic()
        gen = self.app.consumer_generation_id
        if gen != self.generation:
            self.generation = gen
            self.ledger.forget_all()
            self._gaps.clear()
        fresh = [e for e in events if e.message.generation_id == gen]
        unknown = sorted({e.message.tp for e in fresh if not self.ledger.known(e.message.tp)})
        if unknown:
            for tp, off in (await self.offsets.read(unknown)).items():
                if not self.ledger.known(tp):  # the tail probe may have started it meanwhile
                    self.ledger.start(tp, off)
        admitted: list[Any] = []
        expected: dict[TP, int] = {}
        gapped: dict[TP, int] = {}
        for ev in fresh:
            tp, off = ev.message.tp, ev.message.offset
            if tp in gapped or not self.ledger.known(tp):
                continue
            want = expected.get(tp, self.ledger.expected(tp))
            if off < want:
                continue  # done already (delivered again after a seek)
            if off > want:
                gapped[tp] = want
                continue
            expected[tp] = off + 1
            admitted.append(ev)
        for tp, want in gapped.items():
            await self._seek_back(tp, want)
        self._busy = bool(admitted)
        return admitted

    async def _seek_back(self, tp: TP, offset: int) -> None:
        now = time.monotonic()
        last = self._gaps.get(tp)
        if last is not None and last[0] == offset and now - last[1] < RESEEK_SECONDS:
            return  # asked lately; messages fetched before the seek may still be draining
        self._gaps[tp] = (offset, now)
        log.warning("%s: offset %s of %s was not delivered; seeking back to it", self.name, offset, tp)
        # seek_wait runs in Faust's consumer thread and resets its read offset for tp
        await self.app.consumer.seek_wait({tp: offset})
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        """Seek again while a gap stays open: Faust's fetcher can drop the re-fetched
        messages when older ones delivered after the seek move its read offset past them,
        and a partition that then receives nothing new would never bring a batch here."""
        while self._gaps:
            await asyncio.sleep(RESEEK_SECONDS)
            assigned = self.app.consumer.assignment()
            for tp, (offset, _when) in list(self._gaps.items()):
                if tp not in assigned or not self.ledger.known(tp) or self.ledger.expected(tp) != offset:
                    self._gaps.pop(tp, None)
                    continue
                await self._seek_back(tp, offset)

    async def probe_tails(self) -> list[TP]:
        """Seek back the partitions whose remaining messages the agent will not be given.

        Runs only while the agent is idle (no batch in hand, none taken for
        ``TAIL_IDLE_SECONDS``) and Faust's flow is on (during a rebalance Faust seeks to the
        committed offsets itself). A partition of this agent's topics whose next offset to
        process (the ledger's, or the committed one for a partition not seen this
        generation) is below the high-water mark its consumer last fetched has messages
        that were fetched and never handed over: it is sought back there, as a gap is. A
        partition sought ``TAIL_TRIES`` times to the same offset at the same high-water
        mark without progress has no deliverable records there (it is left until either
        moves). Returns the partitions sought back.
        """
        if not self.topics or self._busy or time.monotonic() - self._last_taken < TAIL_IDLE_SECONDS:
            return []
        if not self.app.flow_control.is_active():
            return []
        consumer = self.app.consumer
        highs: dict[TP, int] = {}
        for tp in consumer.assignment():
            if tp.topic in self.topics:
                high = consumer.highwater(tp)
                if high is not None and high > 0:
                    highs[tp] = high
        unknown = [tp for tp in highs if not self.ledger.known(tp)]
        if unknown:
            for tp, off in (await self.offsets.read(unknown)).items():
                if not self.ledger.known(tp):
                    self.ledger.start(tp, off)
        sought: list[TP] = []
        for tp, high in sorted(highs.items()):
            if self._busy or not self.ledger.known(tp):
                break  # a batch came in meanwhile: the agent is not idle
            want = self.ledger.expected(tp)
            if want >= high:
                self._tail_seeks.pop(tp, None)
                continue
            if tp in self._gaps:
                continue  # an open gap: the gap watchdog seeks it
            last = self._tail_seeks.get(tp)
            tries = last[2] + 1 if last is not None and last[:2] == (want, high) else 1
            if tries > TAIL_TRIES:
                continue
            self._tail_seeks[tp] = (want, high, tries)
            log.warning(
                "%s: offsets %s-%s of %s were fetched and never handed over; seeking back (try %d of %d)",
                self.name,
                want,
                high - 1,
                tp,
                tries,
                TAIL_TRIES,
            )
            await self.app.consumer.seek_wait({tp: want})
            sought.append(tp)
        return sought

    async def commit(self, processed: list[Any]) -> None:
        """Record ``processed`` (outputs already confirmed) and commit what is contiguous."""
        self._busy = False
        for ev in processed:
            tp = ev.message.tp
            if self.ledger.known(tp):
                self.ledger.done(tp, ev.message.offset)
                gap = self._gaps.get(tp)
                if gap is not None and self.ledger.expected(tp) > gap[0]:
                    self._gaps.pop(tp, None)
        offsets = self.ledger.committable()
        if not offsets:
            return
        assigned = self.app.consumer.assignment()
        offsets = {tp: off for tp, off in offsets.items() if tp in assigned}
        if offsets and await self.app.consumer._commit(offsets):  # type: ignore[attr-defined]  # Faust's own commit call (pinned <0.16)
            self.ledger.committed(offsets)
