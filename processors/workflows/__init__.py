"""The five workflows' pure steps, one sub-package each, and what they share.

A workflow step is a pure function ``(context, event, rules, now) -> StepResult``:
no broker, clock or network, so every decision replays from the log and
reproduces exactly. ``streams/workflows/<workflow>.py`` wires each step to its topics.

Shared here:

* :mod:`.step` — :class:`~.step.StepResult`, what a step returns;
* :mod:`.workitem` — the work-item contract (queues, states, options, builders and the
  state machine a staff decision drives);
* :mod:`.commands` — side effects as commands with idempotency keys, and draft ids.

Rules live as data in the top-level ``rules/<workflow>/`` folder, loaded by
:mod:`practiceflow.processors.rules`.
"""
