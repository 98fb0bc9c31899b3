"""Versioned prompt files: ``processors/llm/prompts/<task>/<version>.md`` (pure, reads files only).

WHY files with versions: a change of wording changes what a model returns, so every
call's audit event names the prompt it used (``<task>/<version>@<sha256 prefix>``); an
old result can always be traced to its exact prompt, and a practice can add its own
version (``llm.prompts_dir``) without touching the shipped ones. A file is never edited
once released: a new wording is a new version (``v2.md``) and the task's
``prompt_version`` moves to it.

A file holds the messages in order, each after a ``<!-- role: system|user|assistant -->``
line; ``$name`` placeholders (``string.Template``) are filled with the request's pages,
fields and hints. Unknown placeholders fail loudly.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from practiceflow.processors.llm.tasks import FAX_CLASSES, TASKS, LLMRequest

SHIPPED = Path(__file__).resolve().parent / "prompts"
_ROLE = re.compile(r"^<!--\s*role:\s*(system|user|assistant)\s*-->\s*$", re.MULTILINE)
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")


class PromptError(ValueError):
    """A missing or malformed prompt file (a deployment error, not an input's fault)."""


@dataclass(frozen=True)
class Prompt:
    task: str
    version: str
    sha256: str
    messages: tuple[tuple[str, str], ...]  # (role, template text)

    @property
    def ref(self) -> str:
        """What the audit records: ``fax_extract/v1@1a2b3c4d5e6f``."""
        return f"{self.task}/{self.version}@{self.sha256[:12]}"


def load_prompt(task: str, version: str, extra_dir: Path | None = None) -> Prompt:
    """The prompt file for (task, version): the practice's directory first, then the shipped one."""
    if task not in TASKS:
        raise PromptError(f"unknown LLM task {task!r}")
    if not _VERSION.match(version):
        raise PromptError(f"invalid prompt version {version!r}")
    for base in (extra_dir, SHIPPED):
        if base is None:
            continue
        path = Path(base) / task / f"{version}.md"
        if path.is_file():
            raw = path.read_bytes()
            return Prompt(task, version, hashlib.sha256(raw).hexdigest(), _split(raw.decode("utf-8"), path))
    raise PromptError(f"no prompt file {task}/{version}.md")


def _split(text: str, path: Path) -> tuple[tuple[str, str], ...]:
    marks = list(_ROLE.finditer(text))
    if not marks:
        raise PromptError(f"{path}: no '<!-- role: ... -->' line")
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out.append((m.group(1), text[m.end() : end].strip("\n")))
    return tuple(out)


def render_pages(request: LLMRequest) -> str:
    return "\n".join(f"=== page {p.page} ===\n{p.text}" for p in request.pages)


def render(prompt: Prompt, request: LLMRequest) -> list[dict[str, str]]:
    """Chat messages for the request (OpenAI ``messages`` shape)."""
    spec = TASKS[prompt.task]
    wanted = [f for f in request.fields if f in spec.field_names] or list(spec.field_names)
    values = {
        "fields": ", ".join(wanted),
        "hints": json.dumps(request.hints, sort_keys=True) if request.hints else "none",
        "pages": render_pages(request),
        "page_count": str(len(request.pages)),
        "classes": ", ".join(FAX_CLASSES),
    }
    try:
        return [{"role": role, "content": Template(body).substitute(values)} for role, body in prompt.messages]
    except (KeyError, ValueError) as exc:
        raise PromptError(f"{prompt.ref}: bad placeholder {exc}") from exc


def input_sha256(model: str, messages: list[dict[str, str]], schema: dict[str, object]) -> str:
    """A hash of everything the model is given: what the audit records instead of the text."""
    canonical = json.dumps({"model": model, "messages": messages, "schema": schema}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
