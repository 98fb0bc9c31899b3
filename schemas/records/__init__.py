"""The record models, one module per concern; import them from :mod:`practiceflow.schemas.models`."""
