"""Per-practice settings of the EHR write-back (setting ``ehr_fhir``: practice id -> target).

Each practice has its own EHR, so its own FHIR base URL and its own OAuth2 client: SMART
Backend Services (a ``client_credentials`` grant whose client authenticates with a
``private_key_jwt`` assertion signed by the practice's key, registered with the EHR by its
JWKS / key id). ``auth = "none"`` is for the local FHIR server only (tests, the sample day),
so it is refused for any host that is not loopback, and so is plain ``http://`` (a bearer token
and PHI in clear): a typo or a copied local config pointed at a real EHR fails at start-up
instead of sending Tasks unauthenticated (review s18 S11; the LLM layer refuses the same way).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is this machine (``localhost``, 127.0.0.0/8, ``::1``); no DNS
    lookup, so a name that merely resolves to loopback does not count."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EhrFhirTarget(BaseModel):
    """Where and how one practice's work items are written to its EHR."""

    model_config = ConfigDict(extra="forbid")
    base_url: str = Field(description="the EHR's FHIR R4 base, e.g. https://ehr.example/fhir/r4")
    auth: str = Field(default="smart-backend", description="smart-backend | none (local test server only)")
    token_url: str | None = Field(default=None, description="the EHR's OAuth2 token endpoint (SMART backend)")
    client_id: str | None = Field(default=None, description="the client id the EHR registered for this practice")
    private_key_file: Path | None = Field(default=None, description="PEM private key (RS384 or ES384) of the client")
    key_id: str | None = Field(default=None, description="kid of that key in the JWKS the EHR knows")
    algorithm: str = Field(default="RS384", description="RS384 | ES384 (what SMART Backend Services allows)")
    scope: str = Field(
        default="system/Task.rs system/Task.cu system/Patient.cu system/Coverage.cu system/MedicationRequest.cu "
        "system/Claim.cu system/Organization.cu system/PractitionerRole.cu",
        description="scopes asked for (SMART v2 syntax)",
    )
    practice_name: str | None = Field(default=None, description="the Organization's name on the server")
    write_drafts: bool = Field(default=True, description="write the workflows' FHIR drafts beside the Tasks")
    mrn_system: str | None = Field(
        default=None,
        description="the EHR's own MRN identifier system (e.g. urn:oid:...): a signed registration of a matched "
        "patient finds the chart by it; unset, such a registration is answered failed, never a second chart",
    )

    @model_validator(mode="after")
    def _check(self) -> EhrFhirTarget:
        if self.auth not in ("smart-backend", "none"):
            raise ValueError(f"auth must be smart-backend or none, not {self.auth!r}")
        for url in (self.base_url, self.token_url):
            if url is None:
                continue
            scheme = urlsplit(url).scheme.lower()
            if scheme not in ("https", "http"):
                raise ValueError(f"{url!r}: the EHR is reached over https")
            if scheme == "http" and not is_loopback_url(url):
                raise ValueError(f"{url!r}: plain http is for a loopback test server only; use https")
        if self.auth == "none" and not is_loopback_url(self.base_url):
            raise ValueError('auth = "none" is for the local FHIR server on loopback only; use smart-backend')
        if self.auth == "smart-backend" and not (self.token_url and self.client_id and self.private_key_file):
            raise ValueError("smart-backend needs token_url, client_id and private_key_file")
        if self.algorithm not in ("RS384", "ES384"):
            raise ValueError("SMART Backend Services signs with RS384 or ES384")
        return self
