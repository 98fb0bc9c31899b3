"""The workflows' streaming wiring, one module each."""
