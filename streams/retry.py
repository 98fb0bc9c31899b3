"""The retry agents: ``pf.retry.<feed>`` -> the normalize path again, after a backoff.

A transient failure (``processors/retry.py``) sends the RawMessage, with ``retry.*``
headers counting attempts and the time before which the next one must not start, to
its feed's retry topic instead of dead-lettering it. This agent waits for that time
and hands the message to the same :class:`~practiceflow.streams.normalize_agent.Normalizer`
as the raw topic's agent: same de-dup, same outputs, same commit rule. When the
attempts are spent the normalizer writes a ``retries_exhausted`` dead letter with the
last error. The retry topic is partitioned like the raw topics (by practice), so the
de-dup table stays co-partitioned.

Messages of one partition are retried in order, each waiting for its own time: the
backoff is capped (``retry_backoff_max_ms``), so a later message waits at most that
long behind an earlier one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from practiceflow.streams import catalog
from practiceflow.streams.offsets import Committer

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline
    from practiceflow.streams.normalize_agent import Normalizer


def register_retry_agents(pipeline: Pipeline, normalizer: Normalizer) -> None:
    for feed in catalog.FEEDS:
        topic = pipeline.topics[f"retry.{feed}"]
        name = topic.get_topic_name()
        committer = Committer(pipeline.app, pipeline.committed_offsets, name, topic.topics)
        size, named = pipeline.batch_max(feed), pipeline.names_outputs(feed)

        async def retry_agent(stream, _committer=committer, _size=size, _named=named):
            await normalizer.run(
                stream, _committer, honour_not_before=True, batch_max=_size, name_outputs=_named, fold_contexts=False
            )

        pipeline.app.agent(topic, name=f"retry-{name}")(retry_agent)
        pipeline.source_topics.add(name)
