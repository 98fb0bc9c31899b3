"""FHIR R4 feed: resources and Bundles -> normalized records (see ``normalize``)."""

from .normalize import SUPPORTED_TYPES, normalize_fhir

__all__ = ["normalize_fhir", "SUPPORTED_TYPES"]
