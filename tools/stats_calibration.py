"""How often each decision rule calls a difference "resolved": under true nulls (error) and under effects (power).

    python -m tools.stats_calibration            # writes figures/stats_calibration.csv, prints the table

Two rules on paired per-image results of two methods (:mod:`lib.analysis.calibration` simulates
them, with the marginals of the compendium's metrics):

* ``new``: :mod:`lib.analysis.stats` (paired t, exact McNemar for binary outcomes; nothing below
  ``MIN_N`` images);
* ``old``: the notebooks' rule until now, a 95 % percentile-bootstrap interval of the mean
  difference that excludes 0 (``lib.metrics.stats.bootstrap_ci``, 2000 resamples), at any n.

Effects are in standard deviations of the null's per-image difference (0.2, 0.5, 0.8: Cohen's
small, medium and large) and, for binary outcomes, in points of hit rate (10, 20, 30). The
coverage of :func:`lib.analysis.mean_interval` for single means is added per shape.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.process import finish  # noqa: E402
from lib.analysis import MIN_N  # noqa: E402
from lib.analysis.calibration import BINARY_SHAPES, SHAPES, resolved, simulate_pairs  # noqa: E402
from lib.analysis.stats import paired_t_rule  # noqa: E402
from lib.metrics.stats import bootstrap_ci  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZES = (2, 5, 10, 30, 100)
EFFECTS = {"continuous": (0.2, 0.5, 0.8), "binary": (0.1, 0.2, 0.3)}


def old_rule(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = []
    for x, y in zip(a, b):
        _, low, high = bootstrap_ci(x - y, n_resamples=2000, seed=0)
        out.append(low > 0 or high < 0)
    return np.array(out)


def coverage(shape: str, n: int, sims: int, rng: np.random.Generator) -> float:
    a, _ = simulate_pairs(shape, n, sims, rng)
    truth = simulate_pairs(shape, 1, 400_000, np.random.default_rng(6))[0].mean()
    _, low, high, _ = paired_t_rule(a)
    return float(np.mean((low <= truth) & (truth <= high)))


def calibrate(sims_new: int, sims_old: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    jobs = [(shape, n) for shape in SHAPES for n in SIZES]
    for shape, n in tqdm(jobs, desc="calibration"):
        kind = "binary" if shape in BINARY_SHAPES else "continuous"
        for effect in (0.0, *EFFECTS[kind]):
            if shape == "skewed-difference" and effect:
                continue  # a null shape only
            measure = "false resolved" if effect == 0 else f"power at {effect:g}"
            for rule, sims in (("new", sims_new), ("old", sims_old)):
                a, b = simulate_pairs(shape, n, sims, rng, effect=effect)
                hits = resolved(shape, a, b) if rule == "new" else old_rule(a, b)
                rows.append({"shape": shape, "kind": kind, "n": n, "rule": rule, "measure": measure,
                             "effect": effect, "rate": float(hits.mean()), "sims": sims})
        if kind == "continuous" and shape != "skewed-difference" and n >= MIN_N:
            rows.append({"shape": shape, "kind": kind, "n": n, "rule": "new", "measure": "mean coverage",
                         "effect": 0.0, "rate": coverage(shape, n, sims_new, rng), "sims": sims_new})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=4000, help="simulated samples per cell, new rule")
    parser.add_argument("--sims-old", type=int, default=400, help="per cell for the (slow) bootstrap rule")
    parser.add_argument("--out", default=str(ROOT / "figures" / "stats_calibration.csv"))
    args = parser.parse_args(argv)
    table = calibrate(args.sims, args.sims_old)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False, float_format="%.4f")
    wide = table.pivot_table(index=["shape", "measure"], columns=["rule", "n"], values="rate")
    print(wide.round(3).to_string())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
    finish()  # every file is written and closed: skip the interpreter's teardown (lib.process)
