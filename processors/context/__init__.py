"""The patient context: what the practice knows about one patient, folded from normalized records.

:mod:`.snapshot` holds the pure fold (``apply``) and the read helpers the workflows use;
``streams/workflows/context.py`` keeps one snapshot per practice and canonical patient id
in a Faust table.
"""
