"""Per-practice settings of the EHR write-back (setting ``ehr_fhir``: practice id -> target).

Each practice has its own EHR, so its own FHIR base URL and its own OAuth2 client: SMART
Backend Services (a ``client_credentials`` grant whose client authenticates with a
``private_key_jwt`` assertion signed by the practice's key, registered with the EHR by its
JWKS / key id). ``auth = "none"`` is for the local FHIR server only (tests, the sample day).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


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

    @model_validator(mode="after")
    def _check(self) -> EhrFhirTarget:
        if self.auth not in ("smart-backend", "none"):
            raise ValueError(f"auth must be smart-backend or none, not {self.auth!r}")
        if self.auth == "smart-backend" and not (self.token_url and self.client_id and self.private_key_file):
            raise ValueError("smart-backend needs token_url, client_id and private_key_file")
        if self.algorithm not in ("RS384", "ES384"):
            raise ValueError("SMART Backend Services signs with RS384 or ES384")
        return self
