"""Shipped rule tables, one folder per workflow (YAML; see processors/rules.py and rules/README.md)."""
