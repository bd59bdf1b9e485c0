"""lib.analysis.claims: the registry of every paper claim is complete, valid and honest about its status."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from lib.analysis.claims import CLAIMS_DIR, METRICS, claims_frame, load_claims

ROOT = Path(__file__).resolve().parent.parent
PAPERS = ROOT.parent / "shared" / "papers"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("0*.ipynb"))


def test_every_notebook_has_a_claims_file_and_every_file_loads():
    claims = load_claims()
    assert sorted({c.notebook for c in claims}) == NOTEBOOKS
    assert len({c.id for c in claims}) == len(claims)


def _items_in(text: str) -> set[str]:
    """'Table N' and 'Fig. N' (also written 'Figure N', 'Figs. 6 and 7') as the paper names them."""
    items = {f"Table {n}" for n in re.findall(r"\bTable\s+(\d+)", text)}
    items |= {f"Fig. {n}" for n in re.findall(r"\b(?:Fig\.|Figure)\s*(\d+)", text)}
    return items


@pytest.mark.skipif(not PAPERS.is_dir(), reason="the papers' texts (../shared/papers) are not beside the clone")
@pytest.mark.parametrize("paper", sorted({c.paper for c in load_claims()}))
def test_no_table_or_figure_of_a_paper_is_left_out(paper):
    text = (PAPERS / f"{paper}.txt").read_text(errors="replace")
    covered = {i.strip() for c in load_claims(paper) for i in re.split(r"[;,]", c.item)}
    covered |= {f"Fig. {n}" for c in load_claims(paper) for n in re.findall(r"Figs?\.\s*([\d\s,and-]+)", c.item)
                for n in re.findall(r"\d+", n)}
    missing = sorted(_items_in(text) - covered, key=lambda s: (s.split()[0], int(s.split()[1])))
    assert not missing, f"{paper}: in the paper but not in the registry: {missing}"


def test_every_output_named_by_a_claim_exists():
    missing = [(c.id, o) for c in load_claims() for o in c.outputs if not (ROOT / o).exists()]
    assert not missing


def test_paper_values_name_the_methods_compared():
    for c in load_claims():
        extra = set(c.paper_values) - set(c.methods)
        assert not extra or c.direction in ("describes", "size"), (c.id, extra)
        for v in c.paper_values.values():  # a number, or (whole tables of "describes" claims) numbers by column
            numbers = v.values() if isinstance(v, dict) and c.direction == "describes" else [v]
            assert all(isinstance(x, (int, float)) or x is None for x in numbers), c.id


def test_binary_claims_use_binary_metrics():
    for c in load_claims():
        if c.metric is not None:
            assert (c.kind == "binary") == (METRICS[c.metric].kind == "binary"), c.id


def test_the_frame_has_one_row_per_claim():
    frame = claims_frame()
    assert len(frame) == len(load_claims()) and frame["id"].is_unique


def _write(tmp_path, claim: dict) -> Path:
    doc = {"paper": "p", "notebook": "00_x", "citation": "c", "claims": [claim]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


@pytest.mark.parametrize("claim, message", [
    ({"id": "a", "item": "Table 1", "statement": "s", "direction": "bigger", "status": "reproduced"}, "direction"),
    ({"id": "a", "item": "Table 1", "statement": "s", "direction": "describes", "status": "done"}, "status"),
    ({"id": "a", "item": "Table 1", "statement": "s", "direction": "better", "status": "reproduced"},
     "needs a metric"),
    ({"id": "a", "item": "Table 1", "statement": "s", "direction": "no_change", "status": "reproduced",
      "metric": "average_drop", "methods": ["x", "y"]}, "positive margin"),
    ({"id": "a", "item": "Table 1", "statement": "s", "direction": "describes", "status": "substituted"},
     "what stands in"),
    ({"id": "a", "item": "Table 1", "statement": "s", "direction": "describes", "status": "not_reproducible"},
     "why"),
    ({"id": "a", "item": "Table 1", "statement": "s", "direction": "describes", "status": "reproduced",
      "metric": "beauty"}, "METRICS"),
    ({"id": "a", "item": "Table 1", "statement": "s", "direction": "describes", "status": "reproduced",
      "colour": "red"}, "unknown fields"),
])
def test_invalid_claims_are_refused_with_the_reason(tmp_path, claim, message):
    with pytest.raises(ValueError, match=message):
        load_claims(folder=_write(tmp_path, claim))


def test_the_registry_folder_ships_with_the_package():
    assert CLAIMS_DIR.is_dir() and len(list(CLAIMS_DIR.glob("*.yaml"))) == len(NOTEBOOKS)


def test_the_scorecard_and_the_readme_are_generated_from_the_data():
    import importlib

    scorecard = importlib.import_module("tools.claims_scorecard")
    assert scorecard.main(["--check"]) == 0, "Fix: python -m tools.claims_scorecard"


def test_claims_with_evidence_get_computed_verdicts_and_the_rest_say_why_not():
    from lib.analysis.evidence import evaluate

    card = evaluate().set_index("claim")
    for c in load_claims():
        row = card.loc[c.id]
        if c.status == "not_reproducible":
            assert row["verdict"] == "not reproducible here" and row["reason"]
        elif c.evidence is not None and c.evidence.get("trained") and row["verdict"] == "not comparable":
            assert "not trained here" in row["reason"], c.id  # an untrained attention never stands for the paper's
        elif c.evidence is not None and c.direction != "describes":
            assert row["verdict"] in ("agrees", "disagrees", "not resolved", "too few"), c.id
            assert row["n"] > 0 and row["ours"]
        elif c.evidence is None:
            assert row["verdict"] in ("not computed", "not comparable"), c.id


def test_evidence_errors_name_the_table_and_the_fix(tmp_path):
    from lib.analysis.evidence import paired_values

    claim = next(c for c in load_claims() if c.evidence is not None)
    with pytest.raises(FileNotFoundError, match=f"Fix: run its notebook \\({claim.notebook}\\)"):
        paired_values(claim, root=tmp_path)


def test_unit_pattern_counts_independent_units_not_rows(tmp_path):
    from lib.analysis.claims import Claim
    from lib.analysis.evidence import paired_values

    (tmp_path / "t.csv").write_text("variant,item,energy\n" + "".join(
        f"{v},pair{u}:{k},{10 * u + k + (5 if v == 'A' else 0)}\n" for v in "AB" for u in range(12) for k in (0, 1)))
    claim = Claim(id="x", paper="p", notebook="00_x", item="Fig. 1", statement="s", metric="energy_per_class",
                  methods=("a", "b"), model=None, direction="better", status="reproduced",
                  evidence={"table": "t.csv", "value": "energy", "method_column": "variant", "image_column": "item",
                            "methods": {"a": "A", "b": "B"}, "unit_pattern": "^([^:]+):"})
    a, b, units = paired_values(claim, root=tmp_path)
    assert len(units) == 12 and sorted(units)[0] == "pair0"
    assert (a - b == 5).all() and a[units.index("pair3")] == 35.5


def _abc_table(tmp_path, shifts):
    rng = np.random.default_rng(0)
    base = rng.normal(50, 5, 20)
    rows = [f"{m},i{k},{base[k] + shift + rng.normal(0, 0.5)}\n" for m, shift in shifts.items() for k in range(20)]
    (tmp_path / "t.csv").write_text("method,image_id,drop\n" + "".join(rows))


def _claim(**kw):
    from lib.analysis.claims import Claim

    evidence = {"table": "t.csv", "value": "drop", "methods": {"new": "N", "b": "B", "c": "C"}, **kw.pop("evidence", {})}
    return Claim(id="x", paper="p", notebook="00_x", item="Abstract", statement="s", metric="average_drop",
                 methods=("new", "b", "c"), model=None, direction="better", status="reproduced", evidence=evidence, **kw)


def test_better_than_every_other_needs_every_comparison(tmp_path):
    from lib.analysis.evidence import claim_estimate
    from lib.analysis.verdicts import verdict

    _abc_table(tmp_path, {"N": 0.0, "B": 3.0, "C": 3.0})  # lower AD: N beats both
    est = claim_estimate(_claim(), root=tmp_path)
    assert verdict(_claim(), est).verdict == "agrees" and "intersection-union" in est.note
    _abc_table(tmp_path, {"N": 0.0, "B": 3.0, "C": 0.0})  # N ties C: the claim is not shown
    est = claim_estimate(_claim(), root=tmp_path)
    assert verdict(_claim(), est).verdict == "not resolved" and "against c" in est.note
    _abc_table(tmp_path, {"N": 0.0, "B": 3.0, "C": -3.0})  # C beats N: the claim fails
    est = claim_estimate(_claim(), root=tmp_path)
    assert verdict(_claim(), est).verdict == "disagrees" and "other way" in est.note


def test_an_untrained_attention_never_stands_for_the_papers_method(tmp_path):
    from lib.analysis.evidence import claim_estimate
    from lib.analysis.verdicts import verdict

    _abc_table(tmp_path, {"N": 0.0, "B": 3.0, "C": 3.0})
    (tmp_path / "moved.csv").write_text("method,weight_change,trained\nN,1.2e-06,False\n")
    claim = _claim(evidence={"trained": "moved.csv"})
    est = claim_estimate(claim, root=tmp_path)
    v = verdict(claim, est)
    assert v.verdict == "not comparable" and "N (weights moved 1.2e-06" in v.reason
    (tmp_path / "moved.csv").write_text("method,weight_change,trained\nN,0.3,True\n")
    assert verdict(claim, claim_estimate(claim, root=tmp_path)).verdict == "agrees"


def test_exact_counts_are_decided_without_an_interval(tmp_path):
    from lib.analysis.claims import Claim
    from lib.analysis.evidence import claim_estimate
    from lib.analysis.verdicts import verdict

    (tmp_path / "t.csv").write_text("method,column,forward_passes\nA,AD100,1\nB,AD100,1281\nA,IC100,1\nB,IC100,1281\n")
    ev = {"table": "t.csv", "value": "forward_passes", "image_column": "column", "where": {"column": "AD100"},
          "methods": {"a": "A", "b": "B"}, "exact": True}
    claim = Claim(id="x", paper="p", notebook="00_x", item="Table 1", statement="s", metric="forward_passes",
                  methods=("a", "b"), model=None, direction="better", status="reproduced", evidence=ev)
    est = claim_estimate(claim, root=tmp_path)
    assert est.method == "exact" and est.value == -1280 and not est.has_interval
    assert verdict(claim, est).verdict == "agrees"  # fewer passes is better
    worse = Claim(**{**claim.__dict__, "direction": "worse"})
    assert verdict(worse, est).verdict == "disagrees"
    (tmp_path / "t.csv").write_text("method,column,forward_passes\nA,i1,1\nA,i2,2\nB,i1,3\nB,i2,3\n")
    varying = {**ev, "where": {}}
    with pytest.raises(ValueError, match="varies"):
        claim_estimate(Claim(**{**claim.__dict__, "evidence": varying}), root=tmp_path)
