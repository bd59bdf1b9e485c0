"""Per-image evaluation, computed once: every paper metric of one (model, method, target rule,
metric group) on one shard of image ids, as tidy rows.

* :mod:`.suite`: the metric groups and their protocols (AD / IC / percentage in, deletion and
  insertion, pointing games, map density), one function per group giving tidy rows;
* :mod:`.methods`: a method key (``"gradcam"``, ``"ucag-gradcam++"``, ``"amgradcam"``) and its
  settings to a CAM object;
* :mod:`.shards`: which image ids a shard holds (consecutive slices of the seeded order, so the
  first ``n`` images a notebook draws are the first shards) and where its rows live;
* :mod:`.run`: :func:`evaluate_shard` (maps through :class:`lib.analysis.map_store.MapStore`,
  metrics, rows), :func:`shard_rows` (read the shard's Parquet file, or compute and write it) and
  :func:`read_rows`.

``python -m lib.evaluation`` is the command line of the pipeline's ``evaluate`` rule.
"""

from .frames import ad_ic_frame, with_protocol
from .methods import build_method, shared_passes
from .run import ROW_COLUMNS, EvalSpec, dataset_rows, evaluate_shard, part_ids, read_rows, shard_rows, write_rows
from .shards import head_name, n_shards, parse_part, part_name, part_names, shard_ids, shard_path, shards_for
from .suite import GROUPS, SuiteSettings, parse_protocol

__all__ = ["ad_ic_frame", "with_protocol", "GROUPS", "ROW_COLUMNS", "EvalSpec", "SuiteSettings", "build_method", "shared_passes", "dataset_rows", "evaluate_shard",
           "head_name", "n_shards", "parse_part", "part_ids", "part_name", "part_names", "parse_protocol", "read_rows", "shard_ids", "shard_path", "shard_rows", "shards_for",
           "write_rows"]
