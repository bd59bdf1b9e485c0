"""Notebook 04 (UCAG, Hong et al., AAAI 2023): what is specific to its experiments.

* :mod:`.maps`: the drawn images and composites, every variant's maps (plain, UCAG, the released
  count + 1, scaling only) computed together and kept in the shared map store;
* :mod:`.evaluation`: the per-image tables (deletion/insertion, pointing games, densities, tied
  pixels, Fig. 2's upscaling) that the claims registry reads;
* :mod:`.rows`: the generic metrics (Tables 1-3 on the validation sample, Table 5) from the per-image
  evaluation rows of :mod:`lib.evaluation` (the pipeline's shards), in :mod:`.evaluation`'s columns;
* :mod:`.tables`: Tables 1, 2, 3, 5, the ablation and Fig. 2 as numbers with the paper's values,
  and their display;
* :mod:`.figures`: Figs. 2 and 4 and the composites' maps;
* :mod:`.report`: the notebook's own conclusions as Markdown.
"""

from .evaluation import (CENTRE, causal_table, density_table, localisation_rows, localisation_table, tied_pixels,
                         upscaling_table)
from .figures import composites_figure, qualitative_figure, upscaling_figure
from .maps import (BLUR, METHODS, RELEASED, SCALING, UCAG_NAMES, VARIANTS, COMPOSITE_LAYOUT, Stacked, blurred,
                   check_sizes, composites, joint_maps, stack, variant_cams, variant_maps)
from .report import findings_markdown
from .rows import VARIANT_KEYS, causal_from_rows, density_from_rows, localisation_from_rows, variant_rows
from .tables import (ABLATION, ablation_table, cost_table, fig2_table, key_numbers, paper_values, readable, summary,
                     table1, table2, table3, table5)

__all__ = ["CENTRE", "causal_table", "density_table", "localisation_rows", "localisation_table", "tied_pixels",
           "upscaling_table", "composites_figure", "qualitative_figure", "upscaling_figure", "BLUR", "METHODS",
           "RELEASED", "SCALING", "UCAG_NAMES", "VARIANTS", "COMPOSITE_LAYOUT", "Stacked", "blurred", "check_sizes",
           "composites", "joint_maps", "stack", "variant_cams", "variant_maps", "findings_markdown",
           "ABLATION", "ablation_table", "cost_table", "fig2_table", "key_numbers", "paper_values", "readable",
           "summary", "table1", "table2", "table3", "table5", "VARIANT_KEYS", "causal_from_rows", "density_from_rows",
           "localisation_from_rows", "variant_rows"]
