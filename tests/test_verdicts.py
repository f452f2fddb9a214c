"Verdict machinery: a verdict is derived from evidence by a criterion, never typed; files round-trip; the registry mirrors CLAIMS.md."

import json, os, re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, strategies as st

from hybrid_replication.verdicts import (
    CLAIMS,
    VERDICTS,
    Criterion,
    Outcome,
    Verdict,
    combine_outcomes,
    get_claim,
    save_verdict,
    verdict_table,
    real_data,
    project_root,
)


def share_criterion():
    "Holds at share 0, does not hold at >= 0.5, partly between; untestable when the share could not be measured."

    def rule(ev):
        s = ev["share"]
        if s is None:
            return Outcome("not testable here", "share not measured", "python measure.py")
        return Outcome("holds" if s == 0 else "does not hold" if s >= 0.5 else "partly holds", f"share {s}")

    return Criterion("share 0 -> holds, >= 0.5 -> does not hold, else partly; unmeasured -> not testable", rule)


@pytest.mark.parametrize(
    "share,expected", [(0, "holds"), (0.2, "partly holds"), (0.5, "does not hold"), (None, "not testable here")]
)
def test_criterion_maps_evidence_to_each_verdict(share, expected):
    v = Verdict("C04", share_criterion(), {"share": share})
    assert v.verdict == expected
    assert v.reason
    assert (v.command is not None) == (expected == "not testable here")


@pytest.mark.parametrize("evidence", [None, {}, [], pd.DataFrame()])
def test_no_verdict_without_evidence(evidence):
    with pytest.raises(ValueError, match="needs measured evidence"):
        Verdict("C04", share_criterion(), evidence)


def test_verdict_cannot_be_typed_in():
    with pytest.raises(TypeError):
        Verdict("C04", share_criterion(), {"share": 0}, verdict="holds")
    v = Verdict("C04", share_criterion(), {"share": 0.9})
    assert v.verdict == "does not hold"  # a field, but set from the evidence only


def test_criterion_must_be_a_criterion_object():
    with pytest.raises(TypeError, match="Criterion"):
        Verdict("C04", lambda ev: Outcome("holds", "x"), {"share": 0})


@pytest.mark.parametrize(
    "out,msg",
    [
        (Outcome("true", "r"), "not one of"),
        (Outcome("holds", " "), "needs a reason"),
        (Outcome("not testable here", "no data"), "needs the command"),
        (("holds", "r"), "Outcome"),
    ],
)
def test_bad_outcomes_are_rejected(out, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        Verdict("C04", Criterion("bad", lambda ev: out), {"x": 1})


def test_unknown_claim():
    with pytest.raises(KeyError, match="unknown claim id"):
        Verdict("C42", share_criterion(), {"share": 0})


kinds = st.sampled_from(VERDICTS)


def _part(i, v):
    effects = ({"name": "e", "detectable": 0.02},) if v == "inconclusive" else ()
    return Outcome(v, f"r{i}", "cmd" if v == "not testable here" else None, effects)


@given(st.lists(kinds, min_size=1, max_size=6))
def test_combine_outcomes_rule(vs):
    "Only testable parts count: all alike -> that label, a mix -> partly holds; all untestable -> not testable here."
    got = combine_outcomes({f"p{i}": _part(i, v) for i, v in enumerate(vs)})
    testable = [v for v in vs if v != "not testable here"]
    if not testable:
        assert got.verdict == "not testable here"
    elif len(set(testable)) == 1:
        assert got.verdict == testable[0]
    else:
        assert got.verdict == "partly holds"
        assert got.reason.split(";")[0] == ", ".join(
            f"{testable.count(k)} {k}" for k in VERDICTS if testable.count(k)
        )
    if "does not hold" in vs and set(testable) == {"does not hold"}:
        assert got.verdict == "does not hold"  # untestable parts never soften a failure


def test_save_and_table_roundtrip(tmp_path):
    v1 = Verdict("C08", share_criterion(), {"share": 0, "table": pd.DataFrame({"a": [1, 2]})}, paper={"n": 110})
    v2 = Verdict("RQ2", share_criterion(), {"share": None})
    f1, f2 = save_verdict(v1, tmp_path, notebook="t"), save_verdict(v2, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C08.json", "RQ2.json"]  # no temporary files left
    j = json.loads(f1.read_text())
    assert j["evidence"]["table"] == [{"a": 1}, {"a": 2}]
    assert j["provenance"]["notebook"] == "t" and "git_commit" in j["provenance"]
    t = verdict_table(tmp_path)
    assert list(t.id) == ["C08", "RQ2"] and list(t.verdict) == ["holds", "not testable here"]
    full = verdict_table(tmp_path, include_missing=True)
    assert list(full.id) == list(CLAIMS) and (full.verdict == "no verdict yet").sum() == len(CLAIMS) - 2


def test_demo_verdicts_are_not_written(tmp_path, capsys):
    v = Verdict("C03", share_criterion(), {"share": 0}, data="demo")
    assert save_verdict(v, tmp_path / "v") is None
    assert not (tmp_path / "v").exists()
    assert "demo" in capsys.readouterr().out


def test_table_rejects_a_typed_verdict_file(tmp_path):
    (tmp_path / "C01.json").write_text(json.dumps({"claim_id": "C01", "verdict": "yes", "reason": "typed"}))
    with pytest.raises(ValueError, match="C01.json"):
        verdict_table(tmp_path)


def test_real_data(monkeypatch, tmp_path):
    monkeypatch.delenv("HYBRID_DATA", raising=False)
    assert real_data() is None
    (tmp_path / "xquad-r").mkdir()
    monkeypatch.setenv("HYBRID_DATA", str(tmp_path))
    assert real_data("xquad-r") == tmp_path and real_data("xquad-r", "mlqa-r") is None


def _claims_md():
    for p in (
        os.environ.get("HYBRID_CLAIMS_MD"),
        project_root().parent / "shared" / "CLAIMS.md",
        Path(os.environ.get("HYBRID_DATA", "/nonexistent")).parent / "CLAIMS.md",
    ):
        if p and Path(p).is_file():
            return Path(p)
    return None


def test_registry_mirrors_claims_md():
    md = _claims_md()
    if md is None:
        pytest.skip("CLAIMS.md not found beside the checkout")
    rows = {}
    for line in md.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\|\s*((?:C|RQ)\d+)\s*\|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    assert set(rows) == set(CLAIMS)
    for cid, cells in rows.items():
        c = get_claim(cid)
        assert (c.text, c.seeds, c.decided_by) == tuple(cells), (
            cid
        )  # claim/question, seeds, evidence (or offline plan)
