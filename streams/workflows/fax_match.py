"""The fax step matches faxed documents to charts through the worker's patient context.

Why a module of its own: the fax step runs inside the raw fax agent (``streams/fax.py``
FaxOcr, after OCR), built before the Pipeline and its context tables; this module, registered
right after ``context`` (``MODULES``), gives it the context's matcher and the context's
barrier, so neither the fax handler nor ``streams/app.py`` needs to know about the tables.

* Matcher: ``processors/workflows/fax/context_match.py`` :class:`ContextMatcher` over
  ``PatientContexts.match`` with the practice's ``patient_match.fax`` rule (an MRN or member
  id through the crosswalk, else name + date of birth through the demographic index).
* Barrier: before classifying a fax, ``PatientContexts.caught_up`` on the practice's
  partition (as ``patient_match.resolve_patient`` does), so a chart registered (ADT^A04, a
  FHIR Patient) before the fax arrived is in the index it is matched against. Past
  ``CONTEXT_WAIT_SECONDS`` the fax is matched on what is folded (logged), never held back.

A fax workflow given its own matcher (a test's ``Directory``, the evaluation) keeps it; a
worker without a fax handler or classifier is left alone. The answer depends on the charts
folded when the fax is classified: a replay after a crash re-matches against the same
charts plus any registered since (never fewer), so a fax unmatched the first time may match
on replay, and a matched one stays matched unless its chart was merged away.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import faust

from practiceflow.processors.context import matching
from practiceflow.processors.rules import PracticeRules
from practiceflow.processors.workflows.fax.context_match import FAX_RULE, ContextMatcher
from practiceflow.processors.workflows.fax.match import IdentifierOnPage
from practiceflow.processors.workflows.patient_match import load_match_rules
from practiceflow.streams import catalog
from practiceflow.streams.fax import FaxOcr
from practiceflow.streams.workflows.context import PatientContexts, contexts_of
from practiceflow.streams.workflows.patient_match import CONTEXT_WAIT_SECONDS

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.worker.fax")

__all__ = ["context_matcher", "register"]


def context_matcher(contexts: PatientContexts, rules: PracticeRules[matching.MatchRules]) -> ContextMatcher:
    """A fax Matcher reading ``contexts`` with each practice's fax rule."""

    def match(practice_id: str, probe: matching.Demographics) -> matching.MatchResult:
        return contexts.match(practice_id, probe, rules=rules.get(practice_id))

    def known(practice_id: str, patient_id: str) -> bool:
        return contexts.context_for(practice_id, patient_id) is not None

    return ContextMatcher(match, known)


def register(pipeline: Pipeline) -> None:
    """Give the pipeline's fax step the context matcher and barrier (see module doc)."""
    fax = getattr(pipeline, "fax_handler", None)
    workflow = getattr(fax, "classify", None)
    if (
        not isinstance(fax, FaxOcr)
        or workflow is None
        or not isinstance(getattr(workflow, "matcher", None), IdentifierOnPage)
    ):
        return
    contexts = contexts_of(pipeline)
    # compiled now, not on the event loop (processors/rules.py PracticeRules)
    rules = PracticeRules(partial(load_match_rules, rule_id=FAX_RULE), pipeline.cfg.rules_dir)
    workflow.matcher = context_matcher(contexts, rules)

    async def barrier(practice_id: str) -> None:
        partition = catalog.partition_for(practice_id, pipeline.partitions)
        event = faust.current_event()  # the fax's own message (streams/offsets.py in_event)
        # waiting on the context is progress, not a stall (streams/health.py touch)
        touch = partial(pipeline.sensor.touch, event.message.tp) if event is not None else None
        if not await contexts.caught_up(partition, touch=touch, timeout=CONTEXT_WAIT_SECONDS):
            log.warning("fax match: context not caught up on partition %s; matching on what is folded", partition)

    fax.before_classify = barrier
