"""lib.analysis: the statistics, claims and verdicts behind the notebooks' tables.

* :mod:`lib.analysis.stats`: means, rates and paired differences with calibrated intervals, a
  minimum n, equivalence tests and Holm's adjustment.
"""

from .stats import (LEVEL, MIN_N, Estimate, equivalence, holm, mean_interval, paired_difference,
                    proportion_interval, required_n)

__all__ = ["LEVEL", "MIN_N", "Estimate", "equivalence", "holm", "mean_interval", "paired_difference",
           "proportion_interval", "required_n"]
