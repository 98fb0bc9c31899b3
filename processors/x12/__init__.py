"""X12 5010 feed: tokenizer and normalizer (835, 277/277CA, 271, 999/997, TA1, 837P/I/D).

Public API::

    from practiceflow.processors.x12 import normalize_x12, tokenize
    result = normalize_x12(raw_bytes, practice_id, received_at_ms, strict=False)
"""

from practiceflow.processors.x12.normalize import normalize_x12
from practiceflow.processors.x12.tokenizer import (
    Delimiters,
    FunctionalGroup,
    Interchange,
    ParsedX12,
    TransactionSet,
    decode_x12,
    split_composite,
    tokenize,
)

__all__ = [
    "normalize_x12",
    "tokenize",
    "decode_x12",
    "split_composite",
    "Delimiters",
    "Interchange",
    "FunctionalGroup",
    "TransactionSet",
    "ParsedX12",
]
