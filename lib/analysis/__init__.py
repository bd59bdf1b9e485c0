"""lib.analysis: the statistics, claims and verdicts behind the notebooks' tables.

* :mod:`lib.analysis.stats`: means, rates and paired differences with calibrated intervals, a
  minimum n, equivalence tests and Holm's adjustment (:mod:`lib.analysis.calibration` simulates
  the data that checks them).
* :mod:`lib.analysis.claims`: the registry of every claim of the five papers (``claims/*.yaml``)
  and each metric's sense (``METRICS``: higher is better or not).
* :mod:`lib.analysis.verdicts`: verdicts on claims from our estimates, never typed.
"""

from .stats import (LEVEL, MIN_N, Estimate, equivalence, holm, mean_interval, paired_difference,
                    proportion_interval, required_n)

__all__ = ["LEVEL", "MIN_N", "Estimate", "equivalence", "holm", "mean_interval", "paired_difference",
           "proportion_interval", "required_n"]
