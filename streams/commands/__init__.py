"""Command executors, one module per kind (``cmd.<kind>`` -> side effect -> ``cmd.results``).

An executor performs each ``command_id`` at most once: it records the ids it has answered
(a changelog-backed table, or - ``llm.py`` - the results topic read to its end) and never
repeats the side effect for an id it has answered. Failures of the outside system are
retried with backoff until the command's deadline, then answered ``timeout``/``failed``
with the reason - never dropped.
"""
