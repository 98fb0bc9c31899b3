"""Rules as data: shipped rules load, a practice's file overrides them, bad files are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from practiceflow.processors import rules as rules_mod
from practiceflow.processors.rules import Rule, RuleError, load_rules, load_table


class Threshold(Rule):
    limit: float


def _write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    root = tmp_path / "shipped"
    _write(
        root / "demo",
        "a.yaml",
        "rules:\n  - {id: k.high, version: '1', source: 'protocol A', limit: 5.5}\n"
        "  - {id: k.low, version: '1', source: 'protocol A', limit: 3.5}\n",
    )
    _write(root / "demo", "drugs.yaml", "id: drugs\nversion: '2'\nsource: 'RxNorm'\nentries:\n  - {name: lisinopril}\n")
    monkeypatch.setattr(rules_mod, "default_dir", lambda wf: root / wf)
    return root


def test_shipped_rules_load_with_id_version_source(shipped):
    rs = load_rules("demo", Threshold)
    assert [(r.id, r.version, r.limit) for r in rs] == [("k.high", "1", 5.5), ("k.low", "1", 3.5)]
    assert rs.by_id("k.low").source == "protocol A"
    assert load_table("demo", "drugs").entries == [{"name": "lisinopril"}]


def test_a_practice_replaces_a_rule_with_a_new_version_and_adds_one(shipped, tmp_path):
    practice = tmp_path / "practice"
    _write(
        practice / "demo",
        "mine.yaml",
        "rules:\n  - {id: k.high, version: '1-clinic', source: 'our protocol', limit: 5.0}\n"
        "  - {id: k.extra, version: '1', source: 'our protocol', limit: 9}\n",
    )
    rs = load_rules("demo", Threshold, practice)
    assert {r.id: r.limit for r in rs} == {"k.high": 5.0, "k.low": 3.5, "k.extra": 9}


def test_changing_a_rule_without_a_new_version_is_refused(shipped, tmp_path):
    practice = tmp_path / "practice"
    _write(practice / "demo", "mine.yaml", "rules:\n  - {id: k.high, version: '1', source: 'protocol A', limit: 9}\n")
    with pytest.raises(RuleError, match="keeps its version"):
        load_rules("demo", Threshold, practice)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  - {id: k.x, version: '1', limit: 1}\n", "rule k.x"),  # no source
        ("rules:\n  - {id: k.x, version: '1', source: s, limit: 1, colour: red}\n", "rule k.x"),  # unknown field
        ("rules: [unclosed\n", "not valid YAML"),
        # a tab in the indentation: the message names the character (libyaml's alone does not)
        ("rules:\n\t- {id: k.x}\n", r"(?s)not valid YAML.*'\\t'"),
        ("- just a list\n", "expected a mapping"),
        ("rules:\n  - {id: 'Bad Id', version: '1', source: s, limit: 1}\n", "rule Bad Id"),
    ],
)
def test_bad_files_name_the_file_and_the_rule(shipped, tmp_path, text, message):
    practice = tmp_path / "practice"
    _write(practice / "demo", "bad.yaml", text)
    with pytest.raises(RuleError, match=message) as err:
        load_rules("demo", Threshold, practice)
    assert "bad.yaml" in str(err.value)


def test_duplicate_ids_in_shipped_files_are_refused(shipped):
    _write(shipped / "demo", "b.yaml", "rules:\n  - {id: k.high, version: '2', source: s, limit: 1}\n")
    with pytest.raises(RuleError, match="also in"):
        load_rules("demo", Threshold)


def test_a_practice_folder_changes_only_that_practice(shipped, tmp_path):
    """<rules_dir>/<workflow> is the installation's layer; <rules_dir>/practices/<id>/<workflow>
    is one practice's, on top of it. Another practice of the same worker keeps the installation's."""
    rules_dir = tmp_path / "rules"
    _write(
        rules_dir / "demo", "group.yaml", "rules:\n  - {id: k.low, version: '1-group', source: 'group', limit: 3.0}\n"
    )
    _write(
        rules_dir / "practices" / "clinic-a" / "demo",
        "own.yaml",
        "rules:\n  - {id: k.high, version: '1-a', source: 'clinic A protocol', limit: 4.5}\n",
    )
    loads: list[tuple[Path, ...]] = []

    def load(layers: tuple[Path, ...]) -> dict[str, float]:
        loads.append(layers)
        return {r.id: r.limit for r in load_rules("demo", Threshold, layers)}

    per_practice = rules_mod.PracticeRules(load, rules_dir)
    assert len(loads) == 2  # all compiled up front; practices without a folder share one set
    assert per_practice.get("clinic-a") == {"k.high": 4.5, "k.low": 3.0}
    assert per_practice.get("clinic-b") == {"k.high": 5.5, "k.low": 3.0}
    assert per_practice.get("clinic-c") is per_practice.get("clinic-b")
    assert len(loads) == 2  # never on the event loop
    # a practice id is never a path: nothing outside rules_dir/practices is read
    assert rules_mod.practice_layers(rules_dir, "../../etc") == (rules_dir,)
    assert rules_mod.practices_with_rules(rules_dir) == ["clinic-a"]
    assert "practices" not in rules_mod.workflows_with_rules(rules_dir)


def test_a_practice_layer_that_changes_a_group_rule_needs_its_own_version(shipped, tmp_path):
    rules_dir = tmp_path / "rules"
    _write(
        rules_dir / "demo", "group.yaml", "rules:\n  - {id: k.low, version: '1-group', source: 'group', limit: 3.0}\n"
    )
    own = rules_dir / "practices" / "clinic-a"
    _write(own / "demo", "own.yaml", "rules:\n  - {id: k.low, version: '1-group', source: 'group', limit: 2.0}\n")
    with pytest.raises(RuleError, match="keeps its version"):
        load_rules("demo", Threshold, (rules_dir, own))


def test_rules_check_validates_each_practice_folder(tmp_path, capsys):
    from practiceflow.jobs import rules_check
    from practiceflow.settings import Settings

    rules_dir = tmp_path / "rules"
    own = rules_dir / "practices" / "clinic-a" / "refill"
    _write(own, "bad.yaml", "rules:\n  - {id: Not An Id, version: '1', source: s}\n")
    cfg = Settings(rules_dir=rules_dir)
    assert rules_check.main(None, cfg) == 1  # type: ignore[arg-type]
    out = capsys.readouterr()
    assert "practice clinic-a:" in out.out and "clinic-a/refill: INVALID" in out.err
    (own / "bad.yaml").unlink()
    assert rules_check.main(None, cfg) == 0  # type: ignore[arg-type]
