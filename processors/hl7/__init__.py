"""HL7 v2 processor: a fast splitter-based parser, the normalizer and ACK building.

    from practiceflow.processors.hl7 import normalize_hl7, parse, split_batch, build_ack

The parser and normalizer may run compiled (see ``_speedups``); results are the same.
"""

from practiceflow.processors.hl7._speedups import prefer_fresh, status as speedups_status

prefer_fresh()  # before the first import of the compiled modules

# the imports below come after prefer_fresh() on purpose
from practiceflow.processors.hl7.ack import build_ack, error_code_for  # noqa: E402
from practiceflow.processors.hl7.normalize import normalize_hl7  # noqa: E402
from practiceflow.processors.hl7.parser import HL7ParseError, Message, Segment, parse, split_batch  # noqa: E402

__all__ = [
    "HL7ParseError",
    "Message",
    "Segment",
    "build_ack",
    "error_code_for",
    "normalize_hl7",
    "parse",
    "speedups_status",
    "split_batch",
]
