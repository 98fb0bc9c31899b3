"""The crosswalk's follower scan is skipped for keys new to it; the state must not change (property)."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from practiceflow.processors.identity import crosswalk as xw


def _reference_bind(cw, keys, explicit):
    """``_bind`` as it was before the shortcut: always scans for followers of every moved key."""
    keys = [k for k in keys if k not in cw.ambiguous]
    if not keys:
        return
    current = [cw.ids.get(k, k) for k in keys]
    mrns = list(dict.fromkeys(c for c in current if c.startswith("pid|")))
    if len(mrns) > 1 and not explicit:
        own = mrns[0]
        kept = []
        for k, c in zip(keys, current, strict=True):
            if c.startswith("pid|") and c != own:
                if not k.startswith("pid|"):
                    cw.ambiguous.add(k)
                    cw.ids.pop(k, None)
                continue
            kept.append((k, c))
        keys = [k for k, _ in kept]
        current = [c for _, c in kept]
        mrns = [own]
    existing = [c for c in current if cw.ids.get(c) == c]
    target = mrns[0] if mrns else (existing[0] if existing else current[0])
    moving = set(current) - {target}
    for k in keys:
        cw.ids[k] = target
    if moving:
        for k, c in list(cw.ids.items()):
            if c in moving:
                cw.ids[k] = target
    cw.ids[target] = target


_ident = st.builds(
    lambda t, v: {"type": t, "value": v},
    st.sampled_from(["FHIR", "MB", "PCN"]),
    st.sampled_from(["a", "b", "c", "d"]),
)
_link = st.builds(
    lambda action, pid, ids, other, oids: {
        "practice_id": "p",
        "action": action,
        "patient_id": pid,
        "identifiers": ids,
        "other_patient_id": other if action != "link" or oids else None,
        "other_identifiers": oids,
    },
    st.sampled_from(["link", "link", "link", "merge", "unlink"]),
    st.sampled_from([None, "M1", "M2", "M3"]),
    st.lists(_ident, max_size=3),
    st.sampled_from([None, "M1", "M2", "M4"]),
    st.lists(_ident, max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_link, max_size=12))
def test_shortcut_gives_the_same_crosswalk(links):
    fast = xw.Crosswalk("p")
    slow = xw.Crosswalk("p")
    original = xw._bind
    for link in links:
        xw.apply(fast, link, in_place=True)
        xw._bind = _reference_bind
        try:
            xw.apply(slow, link, in_place=True)
        finally:
            xw._bind = original
        assert (fast.ids, fast.ambiguous) == (slow.ids, slow.ambiguous)
