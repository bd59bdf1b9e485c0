"""Saliency metrics: phi_nu masks, masking conventions, AD / IC / "percentage in", bootstrap CIs.

See PROTOCOLS.md "Metrics" and the attention-guided Grad-CAM paper, Sec. 4.2 (Eqs. 8, 9).
"""

from .average_drop import (FRAME_COLUMNS, PERCENTAGE_IN_FRACTIONS, ad_ic, average_drop_increase,
                           confidence_scores, percentage_in, to_frame)
from .masking import CONVENTIONS, explanation_logits
from .masks import minmax_normalize, num_kept, phi
from .stats import bootstrap_ci, summarize

__all__ = [
    "CONVENTIONS",
    "FRAME_COLUMNS",
    "PERCENTAGE_IN_FRACTIONS",
    "ad_ic",
    "average_drop_increase",
    "bootstrap_ci",
    "confidence_scores",
    "explanation_logits",
    "minmax_normalize",
    "num_kept",
    "percentage_in",
    "phi",
    "summarize",
    "to_frame",
]
