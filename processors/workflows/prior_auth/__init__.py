"""Prior authorization: detect what needs it, gather the evidence, draft the submission (issue 11).

Pure steps (no broker, clock or network): :mod:`.rules` (payer rules and criteria sets as
data), :mod:`.detect` (which order needs authorization), :mod:`.evidence` (each criterion
met / not met / insufficient information, with the records behind it), :mod:`.pas`,
:mod:`practiceflow.processors.x12.x278` and :mod:`.letter` (the drafts), :mod:`.step` (the workflow step) and
:mod:`.response` (a payer's answer updates the authorization).
"""
