"""The streaming wiring of the workflows: one module per workflow (its agents and tables).

Each module consumes its input topics, reads what it needs (the patient context table),
calls its workflow's pure step in ``processors/workflows/<workflow>/`` and hands the
:class:`StepResult` to :func:`.emit.emit_step`. Commit rule, inherited from the normalize
agents (``streams/offsets.py``): a batch's outputs are confirmed by the broker before its
offsets are committed, so a crash replays the batch and the stable ids absorb it.
"""
