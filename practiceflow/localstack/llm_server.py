"""A local OpenAI-compatible model server for tests and demos (aiohttp, its own process).

It speaks the endpoints practiceflow uses, as vLLM documents them: ``GET /v1/models`` and
``POST /v1/chat/completions`` (``response_format`` json_schema, vLLM's
``structured_outputs`` or ``guided_json``). The "model" is deterministic and rule-based:
for an extraction it copies ``Label: value`` lines out of the document in the prompt,
for a classification it looks for a few keywords. That is enough to test everything
around a model - the guard, retries, the breaker, validation, span checks, fallback,
idempotent commands - without a GPU.

Modes (``PUT /_control`` with ``{"mode": ..., "delay_s": ..., "fail_next": n}``):

* ``normal``: the rule-based answer;
* ``slow``: the same after ``delay_s`` seconds;
* ``fail``: HTTP 500 on every completion; ``fail_next: n`` fails only the next n;
* ``truncated``: the answer cut in the middle of its JSON, ``finish_reason: length``;
* ``schema``: well-formed JSON that violates the requested schema;
* ``wrong_spans``: valid JSON whose values are not in the document (a model that
  "corrects" or invents: dates reformatted, digits changed);
* ``redirect``: 307 to a public AI API (the client's guard must refuse to follow).

``GET /_control`` returns the mode and request counters (tests assert that a replayed
command never reached the model). Run: ``python -m practiceflow.localstack.llm_server
--port 8000`` or ``practiceflow llm serve-local``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from typing import Any

from aiohttp import web

from practiceflow.localstack.ports import free_port, wait_for_port

MODEL_ID = "practiceflow/rule-model-1"
MODES = ("normal", "slow", "fail", "truncated", "schema", "wrong_spans", "redirect")

_LABELS: dict[str, tuple[str, ...]] = {
    "patient_name": ("Patient Name", "Patient", "Name"),
    "dob": ("DOB", "Date of Birth", "Birth Date"),
    "mrn": ("MRN", "Medical Record Number", "Chart #"),
    "member_id": ("Member ID", "Subscriber ID"),
    "sender": ("From", "Ordering Provider", "Referring Provider"),
    "sender_fax": ("From Fax", "Sender Fax", "Return Fax", "Reply Fax"),
    "addressee": ("To", "Attn"),
    "payer": ("Payer", "Health Plan"),
    "decision": ("Decision", "Determination"),
    "reference": ("Reference #", "Authorization #", "Auth #"),
    "records_requested": ("Records Requested",),
    "date_range": ("Date Range", "Dates of Service"),
    "drug": ("Medication", "Drug"),
    "strength": ("Strength",),
    "pharmacy": ("Pharmacy",),
    "referral_reason": ("Reason for Referral",),
    "test": ("Test",),
}
_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("prior authorization", "prior_auth_response"),
    ("refill", "refill_request"),
    ("referral", "referral"),
    ("records request", "records_request"),
    ("laboratory", "lab_result"),
    ("lab result", "lab_result"),
    ("cover sheet", "cover_sheet"),
    ("special offer", "marketing"),
)


class State:
    def __init__(self) -> None:
        self.mode = "normal"
        self.delay_s = 2.0
        self.fail_next = 0
        self.counts: dict[str, int] = {"models": 0, "chat": 0, "chat_answered": 0, "max_in_flight": 0}
        self.in_flight = 0
        # counters start a new epoch on reset: a slow request a previous test abandoned (aiohttp
        # does not cancel a handler when its client goes away) must not count in the next one
        self.epoch = 0
        self.last_style: str | None = None


def _schema_of(body: dict[str, Any], state: State) -> dict[str, Any] | None:
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        state.last_style = "response_format"
        return (rf.get("json_schema") or {}).get("schema")
    so = body.get("structured_outputs")
    if isinstance(so, dict) and "json" in so:
        state.last_style = "structured_outputs"
        return so["json"]
    if "guided_json" in body:
        state.last_style = "guided_json"
        return body["guided_json"]
    state.last_style = None
    return None


def _pages(text: str) -> list[tuple[int, str]]:
    parts = re.split(r"^=== page (\d+) ===\n", text, flags=re.MULTILINE)
    return [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def _wanted(text: str) -> list[str]:
    m = re.search(r"^Fields to extract \(use these names\): (.*)$", text, flags=re.MULTILINE)
    return [f.strip() for f in m.group(1).split(",")] if m else list(_LABELS)


def rule_extract(user: str) -> dict[str, Any]:
    """The rule-based model's extraction: the first ``Label: value`` per wanted field."""
    fields = []
    for name in _wanted(user):
        for label in _LABELS.get(name, ()):
            hit = None
            for page, body in _pages(user):
                m = re.search(rf"(?im)^\s*{re.escape(label)}\s*:[ \t]*(\S[^\n]*?)\s*$", body)
                if m:
                    hit = {"name": name, "text": m.group(1), "page": page}
                    break
            if hit:
                fields.append(hit)
                break
    return {"fields": fields}


def rule_classify(user: str) -> dict[str, Any]:
    for page, body in _pages(user):
        low = body.lower()
        for word, label in _KEYWORDS:
            i = low.find(word)
            if i >= 0:
                return {
                    "label": label,
                    "confidence": 0.8,
                    "evidence": [{"text": body[i : i + len(word)], "page": page}],
                }
    first = _pages(user)[0] if _pages(user) else (1, "")
    quote = first[1].strip().splitlines()[0][:40] if first[1].strip() else "page"
    return {"label": "other_clinical", "confidence": 0.3, "evidence": [{"text": quote, "page": first[0]}]}


def _wrong(answer: dict[str, Any]) -> dict[str, Any]:
    """What a model that 'helps' does: reformat dates, change digits, invent a name."""
    out = json.loads(json.dumps(answer))
    for f in out.get("fields", []):
        f["text"] = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), f["text"]) + " (verified)"
    for e in out.get("evidence", []):
        e["text"] = "this document is a " + e["text"] + " per our records"
    if "fields" in out and not out["fields"]:
        out["fields"].append({"name": "patient_name", "text": "Jane Invented", "page": 1})
    return out


async def models(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    state.counts["models"] += 1
    return web.json_response(
        {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "practiceflow"}]}
    )


async def chat(request: web.Request) -> web.StreamResponse:
    state: State = request.app["state"]
    state.counts["chat"] += 1
    epoch = state.epoch
    state.in_flight += 1
    state.counts["max_in_flight"] = max(state.counts["max_in_flight"], state.in_flight)
    try:
        return await _chat(request, state)
    finally:
        if state.epoch == epoch:  # a reset since this request began already zeroed the count
            state.in_flight -= 1


async def _chat(request: web.Request, state: State) -> web.StreamResponse:
    try:
        body = await request.json()
        messages = body["messages"]
        user = "\n".join(m["content"] for m in messages if m.get("role") == "user")
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": {"message": "bad request", "type": "invalid_request_error"}}, status=400)
    schema = _schema_of(body, state)
    if schema is None:
        return web.json_response({"error": {"message": "this server wants a JSON schema"}, "type": "x"}, status=400)
    mode = state.mode
    if state.fail_next > 0:
        state.fail_next -= 1
        mode = "fail"
    if mode == "fail":
        return web.json_response({"error": {"message": "engine error", "type": "InternalServerError"}}, status=500)
    if mode == "redirect":
        raise web.HTTPTemporaryRedirect("https://api.openai.com/v1/chat/completions")
    if mode == "slow":
        await asyncio.sleep(state.delay_s)
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    answer = rule_classify(user) if "label" in props else rule_extract(user)
    finish = "stop"
    if mode == "schema":
        answer = {"label": "horoscope", "confidence": 7} if "label" in props else {"fields": "see attached"}
    if mode == "wrong_spans":
        answer = _wrong(answer)
    content = json.dumps(answer)
    if mode == "truncated":
        content, finish = content[: max(1, len(content) // 2)], "length"
    state.counts["chat_answered"] += 1
    return web.json_response(
        {
            "id": f"chatcmpl-{state.counts['chat']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or MODEL_ID,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": len(user) // 4, "completion_tokens": len(content) // 4},
        }
    )


async def control_get(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    return web.json_response(
        {"mode": state.mode, "delay_s": state.delay_s, "counts": state.counts, "last_style": state.last_style}
    )


async def control_put(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    body = await request.json()
    mode = body.get("mode", state.mode)
    if mode not in MODES:
        return web.json_response({"error": f"mode must be one of {MODES}"}, status=400)
    state.mode = mode
    state.delay_s = float(body.get("delay_s", state.delay_s))
    state.fail_next = int(body.get("fail_next", 0))
    if body.get("reset_counts"):
        state.counts = dict.fromkeys(state.counts, 0)
        state.epoch += 1
        state.in_flight = 0
    return await control_get(request)


def make_app() -> web.Application:
    app = web.Application()
    app["state"] = State()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/_control", control_get)
    app.router.add_put("/_control", control_put)
    return app


class LocalLLMServer:
    """The server above in a child process on a loopback port (tests, ``./pf day``)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalLLMServer:
        cmd = [
            sys.executable,
            "-m",
            "practiceflow.localstack.llm_server",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_for_port(self.host, self.port, time.monotonic() + timeout, self.proc):
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr and self.proc.poll() else ""
            self.stop()
            raise RuntimeError(f"the local LLM server did not start on {self.origin}: {err[-500:]}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> LocalLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--mode", default="normal", choices=MODES)
    args = p.parse_args(argv)
    app = make_app()
    app["state"].mode = args.mode
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
