"""Rules as data: load a workflow's YAML rule files, validate them, apply a practice's overrides.

The shipped defaults live in the top-level ``rules/<workflow>/`` folder (installed as
``practiceflow.rules``); a practice edits or extends them in ``<settings.rules_dir>/<workflow>/``.
Each YAML file holds either a list of rules under ``rules:`` or a reference table under
``entries:`` (a drug list, a code table), always with the ``source`` it was taken from.

Every rule has an ``id``, a ``version`` and a ``source``; a work item names the id and
version that produced it. A practice file that uses an id the defaults already have
replaces that rule (and must give it a different version, so the audit trail can tell the
two apart); a new id adds a rule. Anything malformed is refused with the file, the rule and
pydantic's reason — the worker does not start on rules it cannot read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Rule(BaseModel):
    """The fields every rule has; a workflow subclasses it with its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]*$")
    version: str = Field(min_length=1)
    source: str = Field(min_length=1, description="where the rule comes from: a protocol, a guideline, a code set")
    description: str = ""


class Table(BaseModel):
    """A reference table (drug list, code table) with its source."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    version: str
    source: str | list[str]
    description: str = ""
    entries: list[dict[str, Any]]


R = TypeVar("R", bound=Rule)


class RuleError(ValueError):
    """A rule file that cannot be used: the message names the file and the rule."""


@dataclass(frozen=True)
class RuleSet(Generic[R]):
    workflow: str
    rules: tuple[R, ...]
    files: tuple[str, ...]  # where they came from, for `practiceflow rules show`

    def __iter__(self) -> Iterator[R]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def by_id(self, rule_id: str) -> R:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


def default_dir(workflow: str) -> Path:
    """The shipped rules of one workflow (inside the installed package)."""
    return Path(str(resources.files("practiceflow.rules"))) / workflow


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RuleError(f"{path}: expected a mapping with 'rules:' or 'entries:' at the top")
    return data


def _rules_in(path: Path, model: type[R]) -> list[R]:
    data = _read(path)
    raw = data.get("rules")
    if raw is None:
        return []  # a table file
    if not isinstance(raw, list):
        raise RuleError(f"{path}: 'rules' must be a list")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(model.model_validate(item))
        except ValidationError as exc:
            name = item.get("id", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
            raise RuleError(f"{path}: rule {name}: {exc}") from exc
    return out


def load_rules(workflow: str, model: type[R], overrides_dir: Path | None = None) -> RuleSet[R]:
    """The workflow's shipped rules, with a practice's overrides applied (see module doc)."""
    rules: dict[str, R] = {}
    origin: dict[str, Path] = {}
    files: list[str] = []
    for path in _yaml_files(default_dir(workflow)):
        files.append(str(path))
        for rule in _rules_in(path, model):
            if rule.id in rules:
                raise RuleError(f"{path}: rule id {rule.id} also in {origin[rule.id]}")
            rules[rule.id], origin[rule.id] = rule, path
    if overrides_dir is not None:
        seen: set[str] = set()
        for path in _yaml_files(overrides_dir / workflow):
            files.append(str(path))
            for rule in _rules_in(path, model):
                if rule.id in seen:
                    raise RuleError(f"{path}: rule id {rule.id} given twice in the practice's rules")
                seen.add(rule.id)
                shipped = rules.get(rule.id)
                if shipped is not None and shipped.version == rule.version and shipped != rule:
                    raise RuleError(
                        f"{path}: rule {rule.id} changes the shipped rule but keeps its version {rule.version}; "
                        "give it a new version so work items can tell them apart"
                    )
                rules[rule.id], origin[rule.id] = rule, path
    return RuleSet(workflow, tuple(rules.values()), tuple(files))


def load_table(workflow: str, table_id: str, overrides_dir: Path | None = None) -> Table:
    """A reference table by id; a practice's file with the same id replaces the shipped one."""
    found: Table | None = None
    folders = [default_dir(workflow)] + ([overrides_dir / workflow] if overrides_dir else [])
    for folder in folders:
        for path in _yaml_files(folder):
            data = _read(path)
            if "entries" not in data or data.get("id") != table_id:
                continue
            try:
                found = Table.model_validate(data)
            except ValidationError as exc:
                raise RuleError(f"{path}: table {table_id}: {exc}") from exc
    if found is None:
        raise RuleError(f"no table {table_id!r} in rules/{workflow}/")
    return found


def load_table_layers(workflow: str, table_id: str, overrides_dir: Path | None = None) -> tuple[Table, Table | None]:
    """The shipped table and the practice's table of the same id (None when it has none), kept
    apart: for tables a practice may only ADD to (the controlled-substance list), the caller
    unions them instead of letting the practice's file replace the shipped one."""
    shipped = load_table(workflow, table_id)
    practice: Table | None = None
    if overrides_dir is not None:
        for path in _yaml_files(overrides_dir / workflow):
            data = _read(path)
            if "entries" not in data or data.get("id") != table_id:
                continue
            try:
                practice = Table.model_validate(data)
            except ValidationError as exc:
                raise RuleError(f"{path}: table {table_id}: {exc}") from exc
    return shipped, practice


def workflows_with_rules(overrides_dir: Path | None = None) -> list[str]:
    """Every workflow folder that holds rule files (shipped or the practice's)."""
    root = Path(str(resources.files("practiceflow.rules")))
    names = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")}
    if overrides_dir is not None and overrides_dir.is_dir():
        names |= {p.name for p in overrides_dir.iterdir() if p.is_dir()}
    return sorted(names)
