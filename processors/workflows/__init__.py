"""The workflows' pure steps, one sub-package each."""
