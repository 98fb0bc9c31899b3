"""The PHI guard: which model endpoints may ever receive a prompt (pure).

WHY in code and not only in settings: a prompt carries protected health information
(names, birth dates, results). A practice's own model server (vLLM on its hardware or
its private cloud) may see it; a public AI API may not, whatever an operator types into
a config file or an environment variable. So two checks run on *every* request the LLM
client sends, the first one and every redirect hop alike (``sinks/llm/client.py``):

1. the URL's origin (scheme, host, port) must be on the explicit allow-list from the
   settings (``llm.allowed_endpoints``); an empty list means no model is ever called;
2. the host must not be a public AI API (:data:`PUBLIC_AI_HOSTS`, exact names and
   whole subdomains such as ``*.openai.azure.com``). This check wins over the allow-list.

A third check needs the network and lives in the client: every address the host
resolves to must be private, loopback or link-local (``llm.require_private_address``),
so a DNS name on the allow-list that points at a public service is refused too
(:func:`address_problem` holds the pure part).

Refusals raise :class:`EndpointRefused` with a reason code and a sentence that names
the host and the rule, never the prompt.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# Public AI inference APIs. A name here matches itself and every subdomain
# (``openai.azure.com`` covers ``contoso.openai.azure.com``). Extend, never shrink.
PUBLIC_AI_HOSTS: tuple[str, ...] = (
    "openai.com",  # api.openai.com and every other OpenAI host
    "chatgpt.com",
    "oaiusercontent.com",
    "openai.azure.com",  # Azure OpenAI resources: <name>.openai.azure.com
    "cognitiveservices.azure.com",  # Azure AI services (OpenAI deployments can live there)
    "services.ai.azure.com",  # Azure AI Foundry
    "models.inference.ai.azure.com",
    "anthropic.com",  # api.anthropic.com
    "claude.ai",
    "generativelanguage.googleapis.com",  # Gemini API
    "aiplatform.googleapis.com",  # Vertex AI (regional forms: PUBLIC_AI_PATTERNS)
    "mistral.ai",  # api.mistral.ai
    "cohere.ai",  # api.cohere.ai
    "cohere.com",  # api.cohere.com
    "groq.com",  # api.groq.com
    "together.xyz",  # api.together.xyz
    "together.ai",
    "openrouter.ai",
    "deepseek.com",  # api.deepseek.com
    "x.ai",  # api.x.ai
    "perplexity.ai",
    "fireworks.ai",
    "replicate.com",
    "api-inference.huggingface.co",
    "router.huggingface.co",
    "deepinfra.com",
    "ai21.com",
    "voyageai.com",
    "anyscale.com",
    "octoai.run",
    "cerebras.ai",
    "sambanova.ai",
    "novita.ai",
    "hyperbolic.xyz",
    "lepton.ai",
    "moonshot.cn",
    "dashscope.aliyuncs.com",
    "bigmodel.cn",
)


# Regional host forms that a suffix cannot express.
PUBLIC_AI_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(^|[.-])aiplatform\.googleapis\.com$"),  # us-central1-aiplatform.googleapis.com
    re.compile(r"(^|\.)bedrock(-runtime|-agent-runtime|-agent)?(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"),
    re.compile(r"(^|\.)[a-z0-9-]*openai[a-z0-9-]*\.azure-api\.net$"),  # APIM fronts named for Azure OpenAI
)


class EndpointRefused(Exception):
    """A request to a model endpoint the guard does not allow. Never retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def _normalize_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii") if host and not host.startswith("[") else host
    except UnicodeError:
        return host


def origin_of(url: str) -> Origin:
    """Scheme, normalized host (lower case, no trailing dot, IDNA) and port of a URL."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise EndpointRefused("llm_endpoint_scheme", f"model endpoints are http(s) URLs, not {scheme or 'no'} scheme")
    host = _normalize_host(parts.hostname or "")
    if not host:
        raise EndpointRefused("llm_endpoint_invalid", "a model endpoint URL without a host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise EndpointRefused("llm_endpoint_invalid", "a model endpoint URL with an invalid port") from exc
    return Origin(scheme, host, port)


def _is_public_ai(host: str) -> str | None:
    """The PUBLIC_AI_HOSTS entry that ``host`` falls under, or None."""
    for name in PUBLIC_AI_HOSTS:
        if host == name or host.endswith("." + name):
            return name
    for pattern in PUBLIC_AI_PATTERNS:
        if pattern.search(host):
            return pattern.pattern
    return None


def check_url(url: str, allowed: tuple[str, ...] | list[str]) -> Origin:
    """Refuse (raise :class:`EndpointRefused`) unless ``url`` may receive PHI; its origin otherwise.

    ``allowed`` are endpoint URLs from the settings (``http://vllm.internal:8000/v1``);
    only their origins count, so any path on an allowed server is allowed.
    """
    origin = origin_of(url)
    public = _is_public_ai(origin.host)
    if public is not None:
        raise EndpointRefused(
            "llm_public_endpoint",
            f"refused to send a prompt to {origin.host}: it is a public AI API ({public}); protected health "
            "information may only go to the practice's own model server (llm.allowed_endpoints), and this "
            "check cannot be turned off in settings",
        )
    permitted = {origin_of(a) for a in allowed}
    if origin not in permitted:
        raise EndpointRefused(
            "llm_endpoint_not_allowed",
            f"refused to call {origin}: not on the allow-list of model endpoints (llm.allowed_endpoints)",
        )
    return origin


def check_allow_list(allowed: tuple[str, ...] | list[str]) -> None:
    """Refuse a settings allow-list that names a public AI API (fail at start-up, not per call)."""
    for url in allowed:
        origin = origin_of(url)
        public = _is_public_ai(origin.host)
        if public is not None:
            raise EndpointRefused(
                "llm_public_endpoint",
                f"llm.allowed_endpoints names {origin.host}, a public AI API ({public}); protected health "
                "information may only go to the practice's own model server",
            )


def address_problem(address: str) -> str | None:
    """Why a resolved address may not receive PHI (a public, routable address), or None.

    Private (RFC 1918, fc00::/7), loopback, link-local and CGNAT (100.64/10, tailnets) ranges
    are where a practice's own model server lives; anything globally routable is refused.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_private or ip.is_link_local:
        return None
    if isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"):
        return None
    return f"{ip} is a public address"
