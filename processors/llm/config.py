"""The LLM layer's settings (``Settings.llm``; env ``PRACTICEFLOW_LLM__<NAME>``).

A plain pydantic model so the pure core can read it without importing the settings
machinery. Defaults call no model at all: ``base_url`` unset means every LLM command is
answered by the embedded fallback (``processors/llm/fallback.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from practiceflow.processors.llm.guard import EndpointRefused, check_allow_list, check_url

#: the least self-reported confidence at which a model's fax label replaces an abstained
#: classification (``llm.fax_min_confidence``). WHY 0.8: a model's stated confidence is not
#: calibrated (the embedded classifier's threshold is, processors/fax/classifier.py), so this
#: only drops the answers the model itself calls guesses (the local test server says 0.3 for
#: "no keyword found", 0.8 for a quoted one); below it the document stays in triage with the
#: model's guess shown. A practice that measured its own model sets its own value.
DEFAULT_FAX_MIN_CONFIDENCE = 0.8


class LLMSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(
        default=None,
        description="the practice's own OpenAI-compatible server (vLLM: http://host:8000/v1); None = embedded fallback only",
    )
    allowed_endpoints: list[str] = Field(
        default_factory=list,
        description="the PHI guard's allow-list: origins (scheme://host:port) that may receive prompts; "
        "base_url must be on it; public AI API hosts are refused whatever this says",
    )
    require_private_address: bool = Field(
        default=True,
        description="refuse an endpoint host that resolves to a public (globally routable) address",
    )
    api_key: SecretStr | None = Field(default=None, description="bearer token if the server wants one (vllm --api-key)")
    model: str | None = Field(default=None, description="served model name; None = the first one /v1/models lists")
    structured_output: Literal["response_format", "structured_outputs", "guided_json"] = Field(
        default="response_format",
        description="how the JSON schema is sent: OpenAI response_format json_schema (vLLM >= 0.6), vLLM's "
        "structured_outputs extra (>= 0.10), or the old guided_json extra (vLLM < 0.12)",
    )
    timeout_s: float = Field(default=30.0, gt=0, description="one HTTP attempt (read/write/pool)")
    connect_timeout_s: float = Field(default=3.0, gt=0)
    deadline_s: float = Field(default=60.0, gt=0, description="one call, all attempts together; then the fallback")
    max_attempts: int = Field(default=3, ge=1, description="attempts per call (first included) on 5xx/429/timeouts")
    backoff_s: float = Field(default=0.5, ge=0, description="first retry delay; doubles, with random jitter")
    backoff_max_s: float = Field(default=8.0, ge=0)
    concurrency: int = Field(default=4, ge=1, description="calls in flight at once from one process")
    breaker_fail_max: int = Field(default=5, ge=1, description="consecutive failed attempts that open the breaker")
    breaker_reset_s: float = Field(default=30.0, gt=0, description="open breaker: fail fast this long, then try one")
    max_tokens: int = Field(default=1024, gt=0)
    temperature: float = Field(default=0.0, ge=0)
    fax_min_confidence: float = Field(
        default=DEFAULT_FAX_MIN_CONFIDENCE,
        ge=0,
        le=1,
        description="a fax label from the model counts only at or above this stated confidence; below it the "
        "document stays abstained, in triage (the model's confidence is not calibrated)",
    )
    prompts_dir: Path | None = Field(
        default=None,
        description="a practice's own prompt versions (<dir>/<task>/<version>.md), beside the shipped ones",
    )

    @model_validator(mode="after")
    def _guarded(self) -> LLMSettings:
        """Refuse, at start-up, a configuration the guard would refuse on every call."""
        try:
            check_allow_list(self.allowed_endpoints)
            if self.base_url is not None:
                check_url(self.base_url, self.allowed_endpoints)
        except EndpointRefused as exc:
            raise ValueError(f"{exc.code}: {exc}") from exc
        return self
