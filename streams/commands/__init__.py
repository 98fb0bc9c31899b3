"""Command executors: one module per command kind (cmd.<kind> topics), each performing a command id at most once."""
