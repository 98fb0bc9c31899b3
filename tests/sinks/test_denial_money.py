"""Denial money in ClickHouse (``denial_money``): per practice, payer and category, denied,
recoverable, recovered (matched from a later 835), written off and days to resolution.

Two 835s of the same claim go through the pure denial step (the first denies a line
CO-4, the second pays it 30 days later); their ledger entries are written through
``ClickHouseSink.write_batch`` into a real chdb and summed with FINAL. Run in a child
process: chdb is one embedded engine per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys
from practiceflow.processors.workflows.denials.rules import load_denial_rules
from practiceflow.processors.workflows.denials.step import DenialContext, decide
from practiceflow.processors.workflows.denials.store import fold_claim
from practiceflow.sinks.clickhouse import ClickHouseSink
from tests.denials_fixtures import RemitClaim, claim_837, claim_record, read_adjudications, read_claim, remit_835

rules = load_denial_rules()
state = fold_claim(None, read_claim(claim_837(claim_record())))
state = fold_claim(state, read_claim(claim_837(claim_record(lines=(("99214", ("25",), 150.0), ("82947", (), 40.0))))))
denied = RemitClaim("PCN1001", 190.0, 32.0, status="1",
    lines=(("99214", 150.0, 0.0, (("CO", "4", 150.0),), ()), ("82947", 40.0, 32.0, (("CO", "45", 8.0),), ())))
paid = RemitClaim("PCN1001", 190.0, 182.0, status="1", pccn="CCN-2",
    lines=(("99214", 150.0, 150.0, (), ()), ("82947", 40.0, 32.0, (("CO", "45", 8.0),), ())))
(a1,) = read_adjudications(remit_835([denied], date="20261201"))
(a2,) = read_adjudications(remit_835([paid], date="20261231", trace="EFT2"))
d1 = decide(DenialContext(state), a1, rules, 1)
d2 = decide(DenialContext(d1.state), a2, rules, 2)
sink = ClickHouseSink(sys.argv[1])
items = [("DenialLedgerEntry", e, ("t.denials.ledger", 0, i)) for i, e in enumerate(d1.ledger + d2.ledger)]
written = sink.write_batch(items, 3)
again = sink.write_batch(items, 3)
rows = sink.query(
    "SELECT payer_id, category, round(sum(denied), 2), round(sum(recoverable), 2), round(sum(recovered), 2),"
    " round(sum(written_off), 2), max(days_to_resolution), count()"
    " FROM {db}.denial_money FINAL WHERE practice_id = 'demo-clinic' GROUP BY payer_id, category ORDER BY category"
)
print(json.dumps({"written": written, "again": again, "rows": rows}))
"""


def test_denial_money_per_payer_and_category(tmp_path: Path):
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"chdb://{tmp_path / 'ch'}"],
        capture_output=True,
        text=True,
        timeout=240,
        env=dict(os.environ),
        cwd=repo,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # d1: coding_modifier + contractual; d2: the coding entry again (recovered) + its own contractual
    assert got["written"] == {"denial_money": 4} and got["again"] == {"denial_money": 4}
    assert [tuple(r) for r in got["rows"]] == [
        ("60054", "coding_modifier", 150.0, 150.0, 150.0, 0.0, 30, 1),
        ("60054", "contractual_obligation", 0.0, 0.0, 0.0, 16.0, None, 2),
    ]
