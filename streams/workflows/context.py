"""The patient context agent: normalized topics -> one PatientContext per practice and patient.

Tables (Faust, RocksDB store by default, changelog-backed like the de-dup table):

* ``patient-context``: ``<practice>/<canonical patient id>`` -> the snapshot
  (``processors/context/snapshot.py``, stored with its ``to_json``).
* ``patient-index``: the identity crosswalk (``x:<practice>|<digest>`` -> ``[identifier
  key, canonical key]``, ``a:<practice>|<digest>`` -> identifier key for keys two patients
  claim) and the demographic index for matching (``b:<practice>|<digest>`` -> patient ids,
  ``d:<practice>/<id>`` -> demographics), see ``processors/context/matching.py``.

No DOB, phone or identifier is ever in a key (a table key is a changelog topic's Kafka
key): blocks and identifier keys are replaced by a SHA-256 digest, and a provisional
patient id (``mb|<member id>``) by ``~<digest>`` (``processors/context/keys.py``). Every
lookup on them is exact-match, so matching gives the same answers.

**The normalizer folds what it writes** (:meth:`PatientContexts.fold_upstream`): its batch's
context records, one snapshot per patient per batch, confirmed with the records and marked with
``pf-context: <worker group>`` (``schemas/headers.py``). The agent below skips the records its own
group marked. It read an input's records topic by topic, in one batch per topic (Faust
interleaves topics by record count), and wrote 2.6 snapshots per input (bench/e2e_notes.md,
session 27). It still folds every other record: one without the mark (an earlier version,
another producer, the retry agents, an input whose partition is not its practice's), one marked
by another worker group (a new group rebuilding its tables from the log), and the record types a
*follower* follows (:meth:`PatientContexts.follow`: prior auth's orders), which the normalizer
leaves to it so the follower gets them with the context they were folded into. Rebuilding the
tables under the SAME group (a lost changelog, the offsets reset) would skip the marked records:
rebuild under a new group id.

One agent reads every topic that changes a context (:data:`CONTEXT_TOPICS`), resolves
each record's canonical patient through the crosswalk (``processors/context/fold.py``),
folds it with the pure ``snapshot.apply`` and, when an ``IdentityLink`` moves a patient
to another canonical id (a FHIR id linked to its MRN, an A40 merge), merges the two
contexts. Commit rule, inherited from the normalize agent (``streams/offsets.py``): a
batch's table writes are sent to the changelogs and confirmed by the broker before the
batch's offsets are committed. A crash in between re-folds the batch; the fold is
idempotent (records replace earlier versions by their own id), so nothing is doubled.
These topics are committed by this agent alone: no other agent of the worker may
consume them (one consumer group has one committed offset per partition).

**Ordering: a workflow sees every record that arrived before its event.** All of a
practice's records go to the same partition number of every topic (``catalog.
partition_for``), and Faust assigns equal partition numbers of equally partitioned topics
to the same worker, so a practice's context and its refill / intake requests live in one
process. A workflow agent calls :meth:`PatientContexts.caught_up` for its batch's
partition before stepping. It is a barrier in two stages:

1. the raw topics (hl7v2, fhir, portal, x12): wait until the normalize agents have
   processed up to the high watermark read at the call, i.e. every input a gateway had
   accepted by then has its normalized records in Kafka (confirmed before an offset counts).
   When every event of a partition in the batch came from the same raw partition, the target
   there is exact instead: just past the last raw record they were made from (the normalizer's
   ``pf-source`` header, :func:`raw_upto`), since what arrived after them there cannot be
   "before" any of them;
2. the context topics: wait until this agent has folded (and confirmed) up to their high
   watermarks read after stage 1. A record the normalizer folded itself is folded once stage 1
   passes (the normalizer's ledger moves only after its fold is confirmed); stage 2 covers the
   records this agent folds (followers' types, the retry agents', earlier versions').

Each stage reads all its high watermarks in one request (``positions.high_watermarks``).
"Processed" is read from the consuming agent's ledger when it runs in this process (offsets
whose outputs are confirmed: what the next commit will say, known before the commit round
trip), else from the group's committed offsets (one request per poll).

So an ORU or RDE accepted before the refill request was read is in the context the step
reads, whichever feed it came by. Faxes are left out of stage 1 (OCR takes seconds and a
fax changes no context), and so are retry topics (a message waiting out a backoff).
Then :meth:`PatientContexts.context_for` returns the snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import faust
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from faust.types import TP

from practiceflow.processors.base import gc_paused
from practiceflow.processors.context import fold, keys, matching, snapshot
from practiceflow.processors.context.snapshot import PatientContext
from practiceflow.processors.identity.choose import policy_for
from practiceflow.processors.identity.crosswalk import Crosswalk, apply as apply_link
from practiceflow.processors.rules import PracticeRules
from practiceflow.schemas.headers import folded_by, source_of
from practiceflow.streams import catalog
from practiceflow.streams.batches import run_batches
from practiceflow.streams.offsets import Committer, Outbox, in_event
from practiceflow.streams.positions import high_watermarks
from practiceflow.streams.serde import AvroCodec

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.worker.context")

#: record type -> its normalized topic suffix, for every record that changes a context
CONTEXT_RECORD_TYPES: tuple[str, ...] = (
    "Patient",
    "Coverage",
    "Encounter",
    "Appointment",
    "Observation",
    "MedicationOrder",
    "Order",
    "Condition",
    "AllergyIntolerance",
    "Immunization",
    "IdentityLink",
)
CONTEXT_TOPICS: tuple[str, ...] = tuple(catalog.NORMALIZED[rt] for rt in CONTEXT_RECORD_TYPES)
BARRIER_FEEDS: tuple[str, ...] = tuple(f for f in catalog.FEEDS if f != "fax")
POLL_SECONDS = 0.01


def raw_upto(events: Iterable[Any]) -> dict[TP, int]:
    """Per raw partition, the offset just past the last raw record ``events`` were normalized
    from (their :data:`~practiceflow.schemas.headers.SOURCE_HEADER`): the exact stage-1 target
    of :meth:`PatientContexts.behind` for that partition.

    Only where it is exact for the whole batch: a partition's events must ALL come from the same
    raw partition. One event without the header (written before it existed, or by the fax LLM
    step), or from another topic (a retry topic, another feed), needs the other feeds' -- and
    that feed's -- high watermark at the call, so its partition gets no exact target at all. The
    barrier ignores targets on topics that are not barrier feeds."""
    sources: dict[int, set[tuple[str, int]] | None] = {}  # normalized partition -> raw TPs (None: not exact)
    upto: dict[tuple[str, int], int] = {}
    for ev in events:
        partition = ev.message.partition
        src = source_of(getattr(ev.message, "headers", None))
        if src is None or src[1] != partition:  # raw and normalized partitions agree (catalog.partition_for)
            sources[partition] = None
            continue
        seen = sources.setdefault(partition, set())
        if seen is not None:
            seen.add((src[0], src[1]))
        upto[(src[0], src[1])] = max(upto.get((src[0], src[1]), 0), src[2] + 1)
    exact = {next(iter(tps)) for tps in sources.values() if tps is not None and len(tps) == 1}
    return {TP(topic, partition): off for (topic, partition), off in upto.items() if (topic, partition) in exact}


def _table_options(pipeline: Pipeline) -> dict[str, Any] | None:
    return {"driver": "rocksdict"} if pipeline.cfg.table_store.startswith("rocksdb") else None


class Watermarks:
    """High watermarks and a group's committed offsets, read with plain clients (no group join).

    Each read is ONE request for all the partitions asked (per leader / per group coordinator):
    the barrier asks every feed or context topic of a partition at once, and used to pay one
    round trip per topic, one after another (14 per refill batch, ~30-40 ms each under load,
    bench/refill_results.md)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "client.id": f"{group}-barrier",
            }
        )
        self._admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": f"{group}-barrier-admin"})
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="context-barrier")

    def _high(self, tps: list[TP]) -> dict[TP, int]:
        got = high_watermarks(self._admin, [(tp.topic, tp.partition) for tp in tps], timeout=30)
        return {tp: got[(tp.topic, tp.partition)] for tp in tps}

    def _committed(self, tps: list[TP]) -> dict[TP, int]:
        got = self._consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in tps], timeout=30)
        return {TP(c.topic, c.partition): c.offset for c in got}

    async def high(self, tps: list[TP]) -> dict[TP, int]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._high, tps)

    async def committed(self, tps: list[TP]) -> dict[TP, int]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._committed, tps)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        with contextlib.suppress(Exception):
            self._consumer.close()
        # an AdminClient has no close(): dropping the last reference destroys it, else it keeps
        # reconnecting (and logging) after the broker is gone
        with contextlib.suppress(AttributeError):
            del self._admin


class PatientContexts:
    """The context tables, the agent that folds into them, and the read API of the workflows."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        app = pipeline.app
        opts = _table_options(pipeline)
        self.table = app.Table("patient-context", default=None, partitions=pipeline.partitions, options=opts)
        self.index = app.Table(
            "patient-index", default=None, partitions=pipeline.partitions, options=dict(opts or {}) or None
        )
        names = [f"{pipeline.prefix}.{suffix}" for suffix in CONTEXT_TOPICS]
        self.topic_names = names
        self._record_type = dict(zip(names, CONTEXT_RECORD_TYPES, strict=True))
        # acks=False: committed by this agent (streams/offsets.py), never by Faust
        self.topic = app.topic(
            *names,
            value_serializer=AvroCodec(pipeline.serde, f"{pipeline.prefix}.context-in", None),
            key_serializer="raw",
            acks=False,
        )
        self.committer = Committer(app, pipeline.committed_offsets, "patient-context", names)
        self.group = app.conf.id  # records this group's normalizers folded (pf-context) are skipped
        self.watermarks = Watermarks(pipeline.bootstrap, app.conf.id)
        self._crosswalks: dict[str, Crosswalk] = {}  # practice -> crosswalk, loaded from the index table
        self._generation: int | None = None
        from practiceflow.processors.workflows.patient_match import load_match_rules

        # compiled now, not on the event loop (processors/rules.py PracticeRules)
        self.match_rules = PracticeRules(load_match_rules, pipeline.cfg.rules_dir)
        # Called with each batch's folded records [(event, record type, record, the context after
        # the batch)] once the batch's context writes are confirmed and before its offsets are
        # committed: a workflow triggered by a context record (prior_auth: orders) follows here,
        # as no second agent may consume these topics. A follower that raises fails the batch.
        self.followers: list[Callable[[list[tuple[Any, str, dict[str, Any], PatientContext]]], Awaitable[None]]] = []
        # the record types the normalizer folds itself (fold_upstream): every context record type
        # but those a follower follows, which this agent folds and hands on as before (follow())
        self.upstream_types: frozenset[str] = frozenset(CONTEXT_RECORD_TYPES)

        async def patient_context(stream: faust.StreamT) -> None:
            await self.run(stream)

        app.agent(self.topic, name="patient-context")(patient_context)
        pipeline.source_topics.update(names)

    def follow(
        self,
        record_types: Iterable[str],
        follower: Callable[[list[tuple[Any, str, dict[str, Any], PatientContext]]], Awaitable[None]],
    ) -> None:
        """Hand ``follower`` each batch's folded records (it uses those of ``record_types``) once
        the batch's writes are confirmed, before its offsets are committed. Records of these types
        stay with this agent: the normalizer does not fold them (and does not mark them), so the
        follower gets them with the context they were folded into, as it always did."""
        self.followers.append(follower)
        self.upstream_types = self.upstream_types - frozenset(record_types)

    # ------------------------------------------------------------------ read API
    def context_for(self, practice_id: str, patient_id: str) -> PatientContext | None:
        """The patient's snapshot, or None when nothing was folded for them.

        Call it after :meth:`caught_up` for the event's partition (see module doc). Works
        inside any agent's event of the same practice (the practice's records share one
        partition number, so the current event points the RocksDB store at the right
        partition) and outside any event (the store then looks through its partitions)."""
        data = self.table.get(keys.patient_key(practice_id, patient_id))
        return snapshot.from_json(data) if data else None

    def crosswalk(self, practice_id: str) -> Crosswalk:
        """The practice's identity crosswalk as this worker holds it (read-only use)."""
        cw = self._crosswalks.get(practice_id)
        if cw is None:
            cw = self._crosswalks[practice_id] = self._load_crosswalk(practice_id)
        return cw

    def rules(self, practice_id: str) -> matching.MatchRules:
        """The practice's matching rule (shipped ``rules/matching/`` + the ``rules_dir`` layers)."""
        return self.match_rules.get(practice_id)

    def match(
        self, practice_id: str, probe: matching.Demographics, *, rules: matching.MatchRules | None = None
    ) -> matching.MatchResult:
        """Which chart ``probe`` (an intake form, a fax's patient) belongs to: identifiers via the
        crosswalk, then the demographic index (processors/context/matching.py). ``rules``: another
        matching rule than the practice's default (the fax step's, streams/workflows/fax_match.py)."""
        return matching.match(
            probe,
            _TableIndex(self.index, practice_id),
            rules or self.rules(practice_id),
            self.crosswalk(practice_id),
        )

    async def caught_up(
        self, partition: int, *, touch: Callable[[], None] | None = None, timeout: float | None = None
    ) -> bool:
        """Wait until every record accepted before this call is folded (two stages, module doc).

        ``touch`` is called while waiting (a caller's health progress); returns False only
        when ``timeout`` (seconds) ran out first."""
        return not await self.behind([partition], touch=touch, timeout=timeout)

    async def behind(
        self,
        partitions: Iterable[int],
        *,
        touch: Callable[[], None] | None = None,
        timeout: float | None = None,
        upto: dict[TP, int] | None = None,
    ) -> set[int]:
        """:meth:`caught_up` for several partitions at once: the ones still behind when ``timeout``
        ran out (empty: every one is caught up).

        ``upto`` (:func:`raw_upto` of the batch's events) gives raw partitions whose target is
        known exactly: ALL the batch's requests of that partition came from there, so what
        matters on it is what arrived before them (up to the last one's offset), not its high
        watermark -- which keeps moving while requests arrive, so each batch waited for the
        next ones' normalization too (bench/refill_results.md). The other feeds still use the
        high watermark read at the call.

        One evaluation for a whole batch: each stage reads the high watermarks of every topic
        of every partition in one request, then polls their committed offsets in one request,
        so the barrier's cost does not grow with the topics or partitions it covers."""
        deadline = None if timeout is None else time.monotonic() + timeout
        parts = sorted(set(partitions))
        late: set[int] = set()
        prefix = self.p.prefix
        raw = [TP(f"{prefix}.raw.{feed}", p) for p in parts for feed in BARRIER_FEEDS]
        covered = set(raw)
        known = {tp: off for tp, off in (upto or {}).items() if tp in covered}
        feeds = getattr(self.p, "feed_committers", {})
        asked = [tp for tp in raw if tp not in known]
        high = await self.watermarks.high(asked) if asked else {}
        need = {tp: off for tp, off in {**high, **known}.items() if off > 0}
        need = await self._until_done(need, lambda tp: feeds.get(tp.topic), deadline, touch)
        late = {tp.partition for tp in need}
        mine = [TP(name, p) for p in parts if p not in late for name in self.topic_names]
        need = {tp: off for tp, off in (await self.watermarks.high(mine)).items() if off > 0} if mine else {}
        need = await self._until_done(need, lambda _tp: self.committer, deadline, touch)
        return late | {tp.partition for tp in need}

    async def _until_done(
        self,
        need: dict[TP, int],
        committer_of: Callable[[TP], Committer | None],
        deadline: float | None,
        touch: Callable[[], None] | None,
    ) -> dict[TP, int]:
        """Wait until each partition of ``need`` is processed (outputs confirmed) up to its offset;
        returns the ones still short at the deadline (empty: all done).

        A partition whose consuming agent runs in this process is read from that agent's ledger
        (its processed offsets, advanced only once their outputs are confirmed, so never ahead of
        what a commit would say): no broker round trip per poll, and no wait for the commit
        itself. The others (not yet admitted in this generation) from the group's committed
        offsets, in one request per poll."""

        def done(tp: TP) -> int:  # -1: not known (any more: a rebalance forgot it meanwhile)
            c = committer_of(tp)
            return c.ledger.expected(tp) if c is not None and c.ledger.known(tp) else -1

        while need:
            unknown = [tp for tp in need if done(tp) < 0]
            committed = await self.watermarks.committed(unknown) if unknown else {}
            need = {tp: off for tp, off in need.items() if max(done(tp), committed.get(tp, -1)) < off}
            if need and not await self._wait(deadline, touch):
                break
        return need

    @staticmethod
    async def _wait(deadline: float | None, touch: Callable[[], None] | None) -> bool:
        if deadline is not None and time.monotonic() > deadline:
            return False
        if touch is not None:
            touch()
        await asyncio.sleep(POLL_SECONDS)
        return True

    def close(self) -> None:
        self.watermarks.close()

    # ------------------------------------------------------------------ the agent
    async def run(self, stream: faust.StreamT) -> None:
        await run_batches(self.p, stream, self.process_batch, "patient context")

    async def process_batch(self, events: list[Any]) -> None:
        committer = self.committer
        admitted = await committer.admit(events)
        self._forget_crosswalks_after_rebalance(committer.generation)
        if not admitted:
            return
        batch = _Batch()
        with gc_paused():  # a batch's fold allocates many short-lived dicts (as the normalizers do)
            for ev in admitted:
                with in_event(ev):
                    self._fold_one(ev, batch)
                self.p.sensor.touch(ev.message.tp)
        # the store and its changelog through the worker's librdkafka producer, as the normalize
        # and audit agents do, not Faust's send_changelog (aiokafka): this agent writes a context
        # (and index entries) for most normalized records, and aiokafka's produce path was the
        # largest producer cost left in a profile at 100 msg/s (bench/e2e_notes.md, session 25).
        # Confirmed like any outbox: the changelog offsets are then recorded in the store, so a
        # restart replays only the tail. None deletes (a tombstone).
        writes = self.p.outbox()
        for table, key, (ev, value) in batch.writes(self):
            writes.table_write(table, ev, key, value)
        await writes.confirm()
        if self.followers and batch.folded:
            folded = [
                (ev, rt, rec, ctx)
                for ev, rt, rec, key in batch.folded
                if (ctx := batch.contexts.get(key, (None, None))[1]) is not None
            ]
            for follow in self.followers:
                await follow(folded)
        for name, n in batch.counts.items():
            self.p._count(name, n)
        await committer.commit(admitted)

    def _forget_crosswalks_after_rebalance(self, generation: int | None) -> None:
        if generation != self._generation:
            self._generation = generation
            self._crosswalks.clear()  # another worker may have moved it while we did not own the partition

    def fold_upstream(
        self, items: list[tuple[Any, str, dict[str, Any]]], outbox: Outbox, generation: int | None
    ) -> dict[str, int]:
        """Fold records in the pass that writes them: the normalizer's, for its batch's context
        records ``(input event, record type, record)``, each sent with ``folded_header(group)``.

        Only :attr:`upstream_types` (a follower's types stay with the agent). All of an input's
        records are in hand here, so a batch writes one snapshot per patient.
        The context agent, which reads them topic by topic, saw an input's records in one batch
        per topic (Faust interleaves topics by record count) and wrote 2.6 snapshots per input
        (bench/e2e_notes.md, session 27). The writes go to ``outbox`` and are confirmed with the
        records, before the inputs are marked and committed, so a replay re-folds (idempotent).
        Each input event names the table partition: a practice's raw, retry and normalized records
        share one partition number (``catalog.partition_for``). Returns the fold's counts, for the
        caller to count once its batch is confirmed."""
        self._forget_crosswalks_after_rebalance(generation)
        batch = _Batch()
        with gc_paused():
            for ev, rt, record in items:
                with in_event(ev):
                    self._fold_record(ev, rt, record, batch)
        for table, key, (ev, value) in batch.writes(self):
            outbox.table_write(table, ev, key, value)
        return batch.counts

    def _fold_one(self, ev: Any, batch: _Batch) -> None:
        record: dict[str, Any] = ev.value
        rt = self._record_type.get(ev.message.topic)
        if rt is None or not record.get("practice_id"):
            return
        if folded_by(getattr(ev.message, "headers", None)) == self.group:
            # folded by this group's normalizer with the batch that wrote it (fold_upstream), and
            # counted there as context.folded: only counted here, as skipped
            batch.count("context.skipped_folded_upstream")
            return
        self._fold_record(ev, rt, record, batch)

    def _fold_record(self, ev: Any, rt: str, record: dict[str, Any], batch: _Batch) -> None:
        practice = record["practice_id"]
        cw = self.crosswalk(practice)
        if rt == "IdentityLink":
            self._link(ev, practice, cw, record, batch)
            return
        policy = policy_for(self.p.cfg.identity_policies, practice)
        pid = fold.context_patient(rt, record, cw, policy)
        if pid is None:
            batch.count("context.unfiled")
            return
        key = keys.patient_key(practice, pid)
        ctx = batch.context(key, self) or snapshot.empty(practice, pid)
        filed = record if record.get("patient_id") == pid else dict(record, patient_id=pid)
        ctx = snapshot.apply(ctx, rt, filed)
        batch.contexts[key] = (ev, ctx)
        if self.followers:
            batch.folded.append((ev, rt, filed, key))
        batch.count("context.folded")
        if rt == "Patient":
            self._index_patient(ev, practice, pid, record, batch)

    # ------------------------------------------------------------------ identity
    def _load_crosswalk(self, practice_id: str) -> Crosswalk:
        cw = Crosswalk(practice_id)
        ids = f"x:{practice_id}|"
        amb = f"a:{practice_id}|"
        legacy: dict[str, str] = {}
        current: dict[str, str] = {}
        for key, value in self.index.items():
            if not isinstance(key, str):
                continue
            if key.startswith(ids):
                if isinstance(value, list):
                    current[value[0]] = value[1]
                elif isinstance(value, str):  # written before keys were digests: the current form wins
                    legacy[key[len(ids) :]] = value
            elif key.startswith(amb):
                # the identifier key in the value; a key written before keys were digests holds it
                cw.ambiguous.add(value if isinstance(value, str) else key[len(amb) :])
        cw.ids.update(legacy)
        cw.ids.update(current)
        return cw

    def _link(self, ev: Any, practice: str, cw: Crosswalk, link: dict[str, Any], batch: _Batch) -> None:
        before = dict(cw.ids)
        before_amb = set(cw.ambiguous)
        try:
            apply_link(cw, link, in_place=True)
        except ValueError:
            batch.count("context.link_refused")
            return
        for k, v in cw.ids.items():
            if before.get(k) != v:
                batch.index[keys.ident_key("x", practice, k)] = (ev, [k, v])
        for k in before.keys() - cw.ids.keys():
            batch.index[keys.ident_key("x", practice, k)] = (ev, None)
        for k in cw.ambiguous - before_amb:
            batch.index[keys.ident_key("a", practice, k)] = (ev, k)
        for old, new in fold.moved(before, cw):
            old_key, new_key = keys.patient_key(practice, old), keys.patient_key(practice, new)
            other = batch.context(old_key, self)
            if other is None:
                continue
            into = batch.context(new_key, self) or snapshot.empty(practice, new)
            batch.contexts[new_key] = (ev, fold.merge(into, other))
            batch.contexts[old_key] = (ev, None)
            batch.count("context.merged")

    def _index_patient(self, ev: Any, practice: str, pid: str, record: dict[str, Any], batch: _Batch) -> None:
        demo = matching.from_patient(record, pid)
        dkey = "d:" + keys.patient_key(practice, pid)
        old = batch.index_value(dkey, self)
        old_blocks = set(matching.blocking_keys(_demo_from_json(old))) if old else set()
        new_blocks = set(matching.blocking_keys(demo))
        for block in old_blocks ^ new_blocks:
            members = batch.block_members(keys.block_key(practice, block), ev, self)
            if block in new_blocks:
                members.add(pid)
            else:
                members.discard(pid)
        batch.index[dkey] = (ev, _demo_to_json(demo))


class _Batch:
    """Pending writes of one batch: the latest value per table key (None = delete)."""

    def __init__(self) -> None:
        self.contexts: dict[str, tuple[Any, PatientContext | None]] = {}
        self.index: dict[str, tuple[Any, Any]] = {}
        # block key -> (the last event that changed it, its members): a set while the batch runs,
        # sorted once when written. A block's list was copied and re-sorted for every patient
        # filed under it, so a batch cost grew with block size times patients (3 % of the
        # worker's samples at 100 msg/s in the benchmark, whose patients share one birth date).
        self.blocks: dict[str, tuple[Any, set[str]]] = {}
        self.counts: dict[str, int] = {}
        self.folded: list[tuple[Any, str, dict[str, Any], str]] = []  # for the followers

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def context(self, key: str, owner: PatientContexts) -> PatientContext | None:
        if key in self.contexts:
            return self.contexts[key][1]
        data = owner.table.get(key)
        return snapshot.from_json(data) if data else None

    def index_value(self, key: str, owner: PatientContexts) -> Any:
        if key in self.index:
            return self.index[key][1]
        return owner.index.get(key)

    def block_members(self, key: str, ev: Any, owner: PatientContexts) -> set[str]:
        """The members of demographic block ``key`` as this batch leaves them, to change in place;
        the block is written (by ``ev``) at the end of the batch."""
        got = self.blocks.get(key)
        members = got[1] if got is not None else set(owner.index.get(key) or ())
        self.blocks[key] = (ev, members)
        return members

    def writes(self, owner: PatientContexts) -> Iterable[tuple[Any, str, tuple[Any, Any]]]:
        """(table, key, (event, value)) for every pending write, contexts first; an emptied block
        is deleted."""
        for key, (ev, ctx) in self.contexts.items():
            yield owner.table, key, (ev, snapshot.to_json(ctx) if ctx is not None else None)
        for key, (ev, value) in self.index.items():
            yield owner.index, key, (ev, value)
        for key, (ev, members) in self.blocks.items():
            yield owner.index, key, (ev, sorted(members) if members else None)


def _demo_to_json(d: matching.Demographics) -> list[Any]:
    return [
        d.patient_id,
        d.family,
        d.given,
        d.middle,
        d.birth_date,
        d.sex,
        d.street,
        d.postal,
        d.phone,
        list(d.identifiers),
    ]


def _demo_from_json(v: list[Any]) -> matching.Demographics:
    return matching.Demographics(*v[:9], identifiers=tuple(v[9]))  # type: ignore[misc]


class _TableIndex:
    """The demographic index of one practice, read from the ``patient-index`` table."""

    def __init__(self, table: Any, practice_id: str) -> None:
        self.table = table
        self.practice_id = practice_id

    def patients(self, block: str) -> Iterable[str]:
        members = self.table.get(keys.block_key(self.practice_id, block)) or ()
        # a block written before keys were digests (until the one-time re-key): a stale member
        # only adds a candidate, scored on its current demographics like any other
        legacy = self.table.get(f"b:{self.practice_id}|{block}")
        return sorted({*members, *legacy}) if legacy else members

    def demographics(self, patient_id: str) -> matching.Demographics | None:
        v = self.table.get("d:" + keys.patient_key(self.practice_id, patient_id))
        if not v and "|" in patient_id:  # a provisional id's entry from before keys were digests
            v = self.table.get(f"d:{self.practice_id}/{patient_id}")
        return _demo_from_json(v) if v else None


def contexts_of(pipeline: Pipeline) -> PatientContexts:
    """The pipeline's context tables (registered by :func:`register`)."""
    contexts = getattr(pipeline, "contexts", None)
    if not isinstance(contexts, PatientContexts):
        raise RuntimeError("the patient context module is not registered (streams/workflows/__init__.py MODULES)")
    return contexts


def register(pipeline: Pipeline) -> None:
    """Create the context tables and agent on ``pipeline`` as ``pipeline.contexts``
    (streams/workflows/__init__.py MODULES, before every workflow that reads them)."""
    pipeline.contexts = PatientContexts(pipeline)  # type: ignore[attr-defined]
