"""Patient identity: one canonical patient id per practice, across every feed.

Two pure modules, used by every normalizer and by the streaming shell:

``choose``
    Which identifier keys a record (the practice's MRN, chosen by identifier type and
    assigning authority under a per-practice :class:`~.choose.IdentityPolicy`), how
    every other identifier is kept (typed; SSNs masked to the last four unless the
    practice opts in), and the *unresolved* marker for a patient that no keyable
    identifier names. SSNs, driver's licences, passports and insurance member ids
    never key anything.

``crosswalk``
    One identifier crosswalk per practice for every feed. Each feed names a patient
    its own way: HL7 by MRN (PID-3), FHIR by logical id (``Patient/<id>``) and
    ``Patient.identifier``, the portal by the practice's patient reference, X12 by
    member id (2100 NM109) and patient control number (CLM01, echoed back as CLP01).
    Records that *link* identifiers (an HL7 Patient with an MRN plus an insurance
    member id, a FHIR Patient with its logical id plus an MRN identifier, an 835 claim
    with CLP01 + member id + REF*EA, an ADT^A24 link, an A40 merge) become
    ``IdentityLink`` records on ``<prefix>.norm.identity`` (see :mod:`.links`). The
    crosswalk folds those links into a per-practice map ``identifier key -> canonical
    id`` and answers, for any record's identifiers, the canonical patient id or
    "unresolved" (never a guess: conflicting answers stay unresolved). The canonical
    id is the MRN the policy chose; a patient seen only through other ids keeps the
    first id it was seen under until a link names its MRN.

The patient-context workflow keeps the crosswalk state in a table (one per practice,
keyed by identifier key) fed from ``norm.identity`` and joins every record on the
canonical id it answers. State is data, the rules are here: the same links folded
in the same order give the same state, so the table can be rebuilt from the topic.
"""

from __future__ import annotations

from practiceflow.processors.identity.choose import (
    DEFAULT_POLICY,
    UNRESOLVED_PREFIX,
    IdentityPolicy,
    choose,
    classify,
    is_unresolved,
    keep,
    mask_ssn,
    policy_for,
    scrub_ssn,
    unresolved_id,
)

__all__ = [
    "DEFAULT_POLICY",
    "UNRESOLVED_PREFIX",
    "IdentityPolicy",
    "choose",
    "classify",
    "is_unresolved",
    "keep",
    "mask_ssn",
    "policy_for",
    "scrub_ssn",
    "unresolved_id",
]
