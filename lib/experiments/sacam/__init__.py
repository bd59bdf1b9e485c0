"""Notebook 03 (SA-CAM, Liang, Li & Jiang): its experiments, tables and figures.

* :mod:`.data`: the evaluation groups, the selection sample, the composites and the hosts (seeded
  draws of :mod:`lib.analysis.draws`);
* :mod:`.selection`: lambda1, lambda2 and the key-area threshold chosen on training images
  (``python -m lib.experiments.sacam``: the grid file of the pipeline's ``select_sacam`` rule);
* :mod:`.causal`: the maps (through :class:`lib.analysis.map_store.MapStore`), Tables 1-3, the
  paired differences, the layer check, Fig. 9's curves and the cost;
* :mod:`.multi_target`: Figs 6-7 scored on composites;
* :mod:`.adversarial`: Tables 4-5 and Fig. 8's cascading randomisation;
* :mod:`.figures`: the figures; :mod:`.report`: display tables, key numbers, computed text.
"""

from .adversarial import (PAPER_TABLES_4_5, accuracy_rule, adversarial_frame, adversarial_table, cascade_frame,
                          case_names)
from .causal import (ALL_METHODS, METHOD_KEYS, METHODS, PAPER_TABLES_1_3, ROWS, auc_frame, auc_pair, causal_curves,
                     cost_table, curve_bands, frames_from_rows, group_table, layer_check, method_cams, paired_differences,
                     table_rows, timed_maps, totals_table)
from .data import (GROUPS, Samples, adversarial_hosts, adversarial_setup, classified_correctly, composite_dataset,
                   host_images, layer_channels, load_images, load_samples, one_per_class, resolve_layer,
                   same_class_pairs, selection_sample, stack, two_class_pairs)
from .figures import (backbones_figure, cascade_curves_figure, cascade_maps_figure, curves_figure, multi_target_figure,
                      selection_figure)
from .multi_target import Composites, load_composites, multi_target_table, same_class_energy, two_class_energy
from .report import agreement_markdown, key_numbers, shown, shown_paired
from .selection import (chosen_parameters, grid_means, library_defaults, parse_grid, perturbation_frame, read_grid,
                        selection_grid, selection_text)
