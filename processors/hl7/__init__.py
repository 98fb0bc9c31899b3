"""HL7 v2 processor: a fast splitter-based parser, the normalizer and ACK building.

    from practiceflow.processors.hl7 import normalize_hl7, parse, split_batch, build_ack
"""
from practiceflow.processors.hl7.ack import build_ack, error_code_for
from practiceflow.processors.hl7.normalize import normalize_hl7
from practiceflow.processors.hl7.parser import HL7ParseError, Message, Segment, parse, split_batch

__all__ = [
    "HL7ParseError",
    "Message",
    "Segment",
    "build_ack",
    "error_code_for",
    "normalize_hl7",
    "parse",
    "split_batch",
]
