"""Rules as data: load a workflow's YAML rule files, validate them, apply a practice's overrides.

The shipped defaults live in the top-level ``rules/<workflow>/`` folder (installed as
``practiceflow.rules``). Overrides come in layers, each a folder with ``<workflow>/`` below it,
later layers winning: ``<settings.rules_dir>/<workflow>/`` for every practice of the
installation (a practice group's shared rules), then
``<settings.rules_dir>/practices/<practice_id>/<workflow>/`` for one practice only. A region
serves many practices from one worker, and one practice's edit must never change another's
decisions: the workflows ask :class:`PracticeRules` for the rules of the event's practice.
Each YAML file holds either a list of rules under ``rules:`` or a reference table under
``entries:`` (a drug list, a code table), always with the ``source`` it was taken from.

Every rule has an ``id``, a ``version`` and a ``source``; a work item names the id and
version that produced it. A practice file that uses an id the defaults already have
replaces that rule (and must give it a different version, so the audit trail can tell the
two apart); a new id adds a rule. Anything malformed is refused with the file, the rule and
pydantic's reason — the worker does not start on rules it cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
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
T = TypeVar("T")

# One override folder, or the layers in order (each holding ``<workflow>/`` folders); None: shipped only.
Overrides = Path | Sequence[Path] | None

PRACTICES_FOLDER = "practices"  # <rules_dir>/practices/<practice_id>/<workflow>/
_PRACTICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


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


def layers(overrides: Overrides) -> tuple[Path, ...]:
    """The override folders in the order they apply (the later wins)."""
    if overrides is None:
        return ()
    if isinstance(overrides, (str, Path)):
        return (Path(overrides),)
    return tuple(Path(p) for p in overrides)


def practice_layers(rules_dir: Path | None, practice_id: str) -> tuple[Path, ...]:
    """The override layers for one practice: the installation's ``rules_dir``, then the
    practice's own ``rules_dir/practices/<practice_id>`` when it has one."""
    if rules_dir is None:
        return ()
    own = Path(rules_dir) / PRACTICES_FOLDER / practice_id
    if _PRACTICE_ID.match(practice_id) and own.is_dir():
        return (Path(rules_dir), own)
    return (Path(rules_dir),)


def practices_with_rules(rules_dir: Path | None) -> list[str]:
    """The practices that have their own rule folder under ``rules_dir/practices``."""
    root = Path(rules_dir) / PRACTICES_FOLDER if rules_dir is not None else None
    if root is None or not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _PRACTICE_ID.match(p.name))


class PracticeRules(Generic[T]):
    """A workflow's compiled rules per practice, all loaded when the worker starts.

    ``load`` compiles the rules for a set of override layers (a workflow's ``load_*_rules``).
    Practices without a folder of their own share one compiled set; each practice with one
    gets its own, built on the installation's layer. Everything is compiled here, once, so
    an agent never parses YAML on the event loop (a drug table takes seconds on a busy
    machine: long enough to miss heartbeats); a changed rule takes effect when the worker
    restarts, after ``practiceflow rules check``. ``fixed`` (tests, evaluations) answers
    every practice with the same rules."""

    def __init__(self, load: Callable[[tuple[Path, ...]], T], rules_dir: Path | None, fixed: T | None = None) -> None:
        self._fixed = fixed
        self._own: dict[str, T] = {}
        if fixed is None:
            self._shared = load(practice_layers(rules_dir, ""))
            self._own = {p: load(practice_layers(rules_dir, p)) for p in practices_with_rules(rules_dir)}

    def get(self, practice_id: str) -> T:
        if self._fixed is not None:
            return self._fixed
        return self._own.get(practice_id, self._shared)


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


# libyaml's loader when PyYAML was built with it (the wheels are): the same documents, about
# ten times faster than the pure-Python one; the worker reads ~46 rule files while it starts,
# and a restart should resume within seconds (issue 8)
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        # the pure-Python loader says more (the offending character, the line with a caret)
        # for the person fixing the file; errors are rare, so the slow path costs nothing
        detail: yaml.YAMLError = exc
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as slow:
            detail = slow
        raise RuleError(f"{path}: not valid YAML: {detail}") from detail
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


def load_rules(workflow: str, model: type[R], overrides_dir: Overrides = None) -> RuleSet[R]:
    """The workflow's shipped rules, with each override layer applied in turn (see module doc)."""
    rules: dict[str, R] = {}
    origin: dict[str, Path] = {}
    files: list[str] = []
    for path in _yaml_files(default_dir(workflow)):
        files.append(str(path))
        for rule in _rules_in(path, model):
            if rule.id in rules:
                raise RuleError(f"{path}: rule id {rule.id} also in {origin[rule.id]}")
            rules[rule.id], origin[rule.id] = rule, path
    for layer in layers(overrides_dir):
        seen: set[str] = set()
        for path in _yaml_files(layer / workflow):
            files.append(str(path))
            for rule in _rules_in(path, model):
                if rule.id in seen:
                    raise RuleError(f"{path}: rule id {rule.id} given twice in the practice's rules")
                seen.add(rule.id)
                before = rules.get(rule.id)
                if before is not None and before.version == rule.version and before != rule:
                    raise RuleError(
                        f"{path}: rule {rule.id} changes the rule of {origin[rule.id]} but keeps its version "
                        f"{rule.version}; give it a new version so work items can tell them apart"
                    )
                rules[rule.id], origin[rule.id] = rule, path
    return RuleSet(workflow, tuple(rules.values()), tuple(files))


def load_table(workflow: str, table_id: str, overrides_dir: Overrides = None) -> Table:
    """A reference table by id; a layer's file with the same id replaces the one before it."""
    found: Table | None = None
    folders = [default_dir(workflow)] + [layer / workflow for layer in layers(overrides_dir)]
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


def load_table_layers(workflow: str, table_id: str, overrides_dir: Overrides = None) -> tuple[Table, list[Table]]:
    """The shipped table and each override layer's table of the same id (in layer order), kept
    apart: for tables a practice may only ADD to (the controlled-substance list), the caller
    unions them instead of letting a layer's file replace the shipped one."""
    shipped = load_table(workflow, table_id)
    added: list[Table] = []
    for layer in layers(overrides_dir):
        for path in _yaml_files(layer / workflow):
            data = _read(path)
            if "entries" not in data or data.get("id") != table_id:
                continue
            try:
                added.append(Table.model_validate(data))
            except ValidationError as exc:
                raise RuleError(f"{path}: table {table_id}: {exc}") from exc
    return shipped, added


def workflows_with_rules(overrides_dir: Overrides = None) -> list[str]:
    """Every workflow folder that holds rule files (shipped or in an override layer)."""
    root = Path(str(resources.files("practiceflow.rules")))
    names = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")}
    for layer in layers(overrides_dir):
        if layer.is_dir():
            names |= {p.name for p in layer.iterdir() if p.is_dir() and p.name != PRACTICES_FOLDER}
    return sorted(names)
