"""Saliency metrics: phi_nu masks, masking conventions, AD / IC / "percentage in", deletion and
insertion, pointing games, map density, cascading randomisation, adversarial verification (SA-CAM),
bootstrap CIs.

See PROTOCOLS.md "Metrics" and the attention-guided Grad-CAM paper, Sec. 4.2 (Eqs. 8, 9).

Every metric that takes images checks them once (:func:`lib.inputs.check_images`: a
``[N, 3, H, W]`` float batch in ``[0, 1]``, no NaN) and raises a message with the fix otherwise.
"""

from .adversarial import adversarial_verification, embed_core_area, random_offsets
from .average_drop import (FRAME_COLUMNS, PERCENTAGE_IN_FRACTIONS, ad_ic, average_drop_increase,
                           confidence_scores, percentage_in, to_frame)
from .causal import auc, deletion_insertion, num_points, saliency_ranks
from .density import map_density
from .localisation import box_pixel_ranges, class_box_masks, energy_pointing_game, pointing_game
from .masking import CONVENTIONS, explanation_logits
from .masks import minmax_normalize, num_kept, phi
from .sanity import cascading_randomization, randomizable_layers, spearman_rank_correlation, ssim
from .stats import bootstrap_ci, summarize

__all__ = [
    "CONVENTIONS",
    "FRAME_COLUMNS",
    "PERCENTAGE_IN_FRACTIONS",
    "ad_ic",
    "adversarial_verification",
    "embed_core_area",
    "random_offsets",
    "auc",
    "box_pixel_ranges",
    "cascading_randomization",
    "class_box_masks",
    "deletion_insertion",
    "energy_pointing_game",
    "map_density",
    "num_points",
    "pointing_game",
    "randomizable_layers",
    "saliency_ranks",
    "spearman_rank_correlation",
    "ssim",
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
