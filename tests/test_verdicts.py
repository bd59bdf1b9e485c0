"""lib.analysis.verdicts: the verdict on a claim follows from the estimate, by the documented rules."""

from __future__ import annotations

import numpy as np
import pytest

from lib.analysis import equivalence, paired_difference
from lib.analysis.claims import Claim
from lib.analysis.verdicts import expected_sign, paper_effect, verdict, verdicts


def claim(direction="better", metric="average_drop", status="substituted", **kw) -> Claim:
    return Claim(id=kw.pop("id", "x-t1"), paper="p", notebook="00_x", item="Table 1", statement="s", metric=metric,
                 methods=("new", "old"), model="m", direction=direction, status=status,
                 substitution="Lite0" if status == "substituted" else None,
                 reason="needs VOC" if status == "not_reproducible" else None, **kw)


RNG = np.random.default_rng(0)
BASE = RNG.uniform(20, 80, 40)


def lower_ad():  # the new method drops the score less: better on average_drop
    return paired_difference(BASE - 8 + RNG.normal(0, 3, 40), BASE)


def test_the_sign_follows_the_metrics_sense():
    assert expected_sign(claim("better", "average_drop")) == -1
    assert expected_sign(claim("better", "insertion_auc")) == 1
    assert expected_sign(claim("worse", "insertion_auc")) == -1
    assert expected_sign(claim("better", "map_area")) is None


def test_a_resolved_difference_agrees_or_disagrees_by_its_sign():
    est = lower_ad()
    assert verdict(claim("better"), est).verdict == "agrees"
    assert verdict(claim("worse"), est).verdict == "disagrees"


def test_an_unresolved_difference_gives_the_n_that_would_resolve_it():
    est = paired_difference(BASE[:12] + RNG.normal(0.5, 10, 12), BASE[:12])
    v = verdict(claim("better"), est)
    assert v.verdict == "not resolved" and v.needed_n is not None and v.needed_n > 12


def test_too_few_images_give_no_verdict():
    est = paired_difference(BASE[:4] - 20, BASE[:4])
    v = verdict(claim("better"), est)
    assert v.verdict == "too few" and "n = 4" in v.reason


def test_status_and_kind_come_before_numbers():
    assert verdict(claim(status="not_reproducible"), lower_ad()).verdict == "not reproducible here"
    assert verdict(claim("describes", metric=None), None).verdict == "not comparable"
    assert verdict(claim("better"), None).verdict == "not computed"
    assert verdict(claim("better", "map_area"), lower_ad()).verdict == "not comparable"


def test_no_change_needs_an_equivalence_estimate_and_uses_its_margin():
    a = BASE + RNG.normal(0, 1, 40)
    c = claim("no_change", "insertion_auc", margin=2.0)
    assert verdict(c, equivalence(a, BASE, 2.0)).verdict == "agrees"
    assert verdict(c, equivalence(a + 10, BASE, 2.0)).verdict == "disagrees"
    with pytest.raises(ValueError, match="equivalence"):
        verdict(c, paired_difference(a, BASE))


def test_size_claims_compare_the_papers_difference_with_our_interval():
    c = claim("size", paper_values={"new": 40.0, "old": 48.0})
    assert paper_effect(c) == -8.0
    assert verdict(c, lower_ad()).verdict == "agrees"
    far = claim("size", paper_values={"new": 40.0, "old": 70.0})
    assert verdict(far, lower_ad()).verdict == "disagrees"


def test_holm_adjustment_can_take_a_verdict_away():
    # three claims, two with p = 0.036: alone each is resolved; Holm gives them 2 x 0.036 > 0.05
    z = np.random.default_rng(1).normal(size=30)
    z = (z - z.mean()) / z.std(ddof=1)
    weak = paired_difference(BASE[:30] - (2.2 / 30**0.5 + z), BASE[:30])  # t = -2.2 on 29 df
    assert weak.p_value == pytest.approx(0.036, abs=0.001)
    pairs = [(claim(id="a"), lower_ad()), (claim(id="b"), weak), (claim(id="c"), weak)]
    alone = verdicts(pairs, family="none").set_index("claim")["verdict"]
    family = verdicts(pairs).set_index("claim")
    assert alone["b"] == alone["c"] == "agrees"
    assert family.loc["b", "verdict"] == family.loc["c", "verdict"] == "not resolved"
    assert family.loc["b", "p_adjusted"] == pytest.approx(2 * weak.p_value)
    assert family.loc["a", "verdict"] == "agrees"


def test_not_worse_is_one_sided_with_its_margin():
    a = BASE + RNG.normal(0, 1, 40)
    c = claim("not_worse", "insertion_auc", margin=1.0)  # higher insertion is better
    assert verdict(c, equivalence(a + 20, BASE, 1.0)).verdict == "agrees"  # a large gain is not a loss
    assert verdict(c, equivalence(a, BASE, 1.0)).verdict == "agrees"
    assert verdict(c, equivalence(a - 10, BASE, 1.0)).verdict == "disagrees"
    assert verdict(c, equivalence(a - 1.0, BASE, 1.0)).verdict == "not resolved"
    ad = claim("not_worse", "average_drop", margin=1.0)  # lower AD is better: a rise is the loss
    assert verdict(ad, equivalence(a - 20, BASE, 1.0)).verdict == "agrees"
    assert verdict(ad, equivalence(a + 10, BASE, 1.0)).verdict == "disagrees"


def test_claims_reading_the_same_evidence_count_once_in_holms_family():
    z = np.random.default_rng(1).normal(size=30)
    z = (z - z.mean()) / z.std(ddof=1)
    weak = paired_difference(BASE[:30] - (2.2 / 30**0.5 + z), BASE[:30])
    same = {"table": "figures/00/t.csv", "value": "drop", "methods": {"new": "N", "old": "O"}}
    pairs = [(claim(id="resnet", evidence=same), weak), (claim(id="inception", evidence=same), weak)]
    family = verdicts(pairs).set_index("claim")
    assert family["p_adjusted"].tolist() == pytest.approx([weak.p_value] * 2)  # one hypothesis, not two
    other = {**same, "where": {"fraction": 0.5}}
    pairs[1] = (claim(id="inception", evidence=other), weak)
    assert verdicts(pairs)["p_adjusted"].tolist() == pytest.approx([2 * weak.p_value] * 2)
