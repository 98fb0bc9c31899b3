"""Patient-portal webhooks: signature check, strict models, normalization (see ``normalize``)."""

from .normalize import EVENT_TYPES, MAX_BODY_BYTES, event_id, normalize_portal, sign, verify_signature

__all__ = ["normalize_portal", "verify_signature", "event_id", "sign", "EVENT_TYPES", "MAX_BODY_BYTES"]
