"""The streaming wiring of the workflows: one module per workflow (its agents and tables).

Each module consumes its input topics, reads what it needs (the patient context table),
calls its workflow's pure step in ``processors/workflows/<workflow>/`` and hands the
:class:`StepResult` to :func:`.emit.emit_step`. Commit rule, inherited from the normalize
agents (``streams/offsets.py``): a batch's outputs are confirmed by the broker before its
offsets are committed, so a crash replays the batch and the stable ids absorb it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

# The workflow modules the worker starts, in order; each has ``register(pipeline) -> None``
# that declares its agents and tables on ``pipeline.app`` and adds the topics it reads to
# ``pipeline.source_topics`` (health checks watch those). Adding a workflow is one line here,
# never an edit of streams/app.py.
MODULES: tuple[str, ...] = (
    "context",  # first: the workflows read its tables
    "fax_match",  # the fax step matches patients through the context (before fax_llm reads its matcher)
    "decisions",  # staff decisions -> work items (every workflow)
    "intake",  # intake forms -> patient match -> eligibility (270/271) -> front-desk items
    "denials",  # 835 adjustments -> categories -> corrected claims / appeals
    "refill",  # refill requests -> routine / needs_review / needs_visit items + renewal drafts
    "prior_auth",  # orders needing authorization -> PAS bundle + 278 + letter to sign; 278 / faxed answers
    "fax_llm",  # the language model's answers (cmd.results) -> revised fax items; the cmd.llm executor
    "ehr_results",  # a failed / refused / no-EHR signed EHR write (cmd.results) -> an item to do it by hand
    "pilot",  # pilot (shadow) mode: staff decisions compared with the proposals, running counts
    "results",  # last: the one agent on cmd.results, handing each batch to the handlers added above
)


def register_all(pipeline: Pipeline) -> None:
    for name in MODULES:
        importlib.import_module(f"practiceflow.streams.workflows.{name}").register(pipeline)
