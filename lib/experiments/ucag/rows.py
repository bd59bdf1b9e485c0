"""Notebook 04's generic metrics from the per-image evaluation rows (:mod:`lib.evaluation`).

Deletion / insertion (Table 1), the pointing games (Tables 2-3, on the validation sample) and the map
densities (Table 5) of the plain and UCAG maps are the suite's metrics under UCAG's protocols, computed
once per (model, method, image, target) by the pipeline's ``evaluate`` jobs (``config/outputs.yaml``,
``reads:`` of notebook 04) or, outside the pipeline, here through the same code
(:func:`lib.evaluation.dataset_rows`). This module names each variant's method key and turns the tidy rows
into the per-image tables of :mod:`.evaluation` (the columns the claims registry reads):

* causal: ``deletion`` on the zero substrate and ``insertion`` on the blurred one (kernel 51, sigma 50), the
  normalised tensor, 1792 pixels per step, x 100 (the suite's ``causal`` group holds both substrates of both
  games; UCAG's protocol is these two);
* localisation: ``pointing`` within 15 px (0/100), ``energy_pointing`` (%), ``box_share`` (% of the image the
  class's boxes cover: 'difficult' below :data:`.evaluation.DIFFICULT_SHARE`); targets without a box of their
  class have no row;
* density: CAMERAS' ``rho+`` and ``rho-`` with the ``[0, 1]`` image masked.

What stays in the notebook is what is specific to the paper: the composites, the blur-only control, tied
pixels, Fig. 2's upscaling and the tables.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
import torch

from lib.evaluation import SuiteSettings, dataset_rows, parse_protocol

from .evaluation import CENTRE, DIFFICULT_SHARE, localisation_rows
from .maps import METHODS, RELEASED, SCALING, UCAG_NAMES, Stacked

__all__ = ["VARIANT_KEYS", "variant_rows", "causal_from_rows", "localisation_from_rows", "density_from_rows"]

VARIANT_KEYS = dict(zip(METHODS + UCAG_NAMES, ["gradcam", "gradcam++", "layercam", "ucag-gradcam", "ucag-gradcam++",
                                               "ucag-layercam"]))
VARIANT_KEYS.update({RELEASED: "ucag-gradcam-count1", SCALING: "ucag-scaling"})
"""Variant -> its method key in ``config/config.yaml`` ``evaluation.methods`` (the pipeline's shards)."""

CAUSAL_SUBSTRATE = {"deletion": "zero", "insertion": "blur"}
"""UCAG's substrates (PROTOCOLS.md): deletion to zero in the normalised tensor, insertion from the blur."""


def variant_rows(net, cams: Mapping[str, object], variants: Sequence[str], dataset, store, group: str, *,
                 eval_dir: str | None = None, shard_size: int = 128, seed: int = 0, batch_size: int = 8
                 ) -> pd.DataFrame:
    """The evaluation rows of metric ``group`` for each of ``variants`` (CAM objects in ``cams``) on ``dataset``
    (the first images of the seeded order), for the images' labels: the pipeline's shards under ``eval_dir``,
    else computed with the maps of ``store`` (:func:`lib.evaluation.dataset_rows`, no progress bar: the maps'
    own, :func:`.maps.variant_maps`, shows the long part); ``method`` is the variant."""
    keyed = {v: (VARIANT_KEYS[v], cams[v]) for v in variants}
    return dataset_rows(net, net.name, keyed, dataset, store, target="label", group=group, eval_dir=eval_dir or None,
                        shard_size=shard_size, seed=seed, suite=SuiteSettings(batch_size=batch_size),
                        batch_size=batch_size, progress=False)


def _wide(rows: pd.DataFrame, metrics: Mapping[str, str | None], keys: Sequence[str]) -> pd.DataFrame:
    """One column per metric (``{metric: substrate or None}``), one row per (variant, image), in the rows' order."""
    parts = []
    for metric, substrate in metrics.items():
        chosen = rows[rows.metric == metric]
        if substrate is not None:
            chosen = chosen[chosen.protocol.map(lambda p: parse_protocol(p).get("substrate") == substrate).astype(bool)]
        if chosen.empty:
            raise ValueError(f"the evaluation rows lack {metric!r}{f' on the {substrate} substrate' if substrate else ''}. "
                             "Fix: read the metric group that holds it (lib.evaluation.suite), or rerun the pipeline's "
                             "evaluate jobs of notebook 04 (config/outputs.yaml, reads:).")
        parts.append(chosen.rename(columns={"method": "variant", "value": metric})[list(keys) + [metric]]
                     .set_index(list(keys)))
    wide = pd.concat(parts, axis=1, join="inner").reset_index()
    if wide.empty or wide[list(metrics)].isna().any().any():
        raise ValueError(f"the evaluation rows lack {sorted(metrics)} for some (variant, image). Fix: rerun the "
                         "pipeline's evaluate jobs of notebook 04 (config/outputs.yaml, reads:).")
    return wide


def causal_from_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 1's per-image frame (:func:`.evaluation.causal_table`'s columns) from ``causal`` rows."""
    wide = _wide(rows, CAUSAL_SUBSTRATE, ["model", "variant", "image_id"])
    return wide[["model", "variant", "image_id", "deletion", "insertion"]]


def density_from_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 5's per-image frame (:func:`.evaluation.density_table`'s columns) from ``density`` rows."""
    return _wide(rows, {"rho+": None, "rho-": None}, ["variant", "image_id"])[["variant", "image_id", "rho+", "rho-"]]


def localisation_from_rows(set_name: str, rows: pd.DataFrame, data: Stacked) -> pd.DataFrame:
    """Tables 2-3's per-target frame of one set (:func:`.evaluation.localisation_table`'s columns) from
    ``localisation`` rows, after the baselines (centre point, uniform map) computed on ``data``'s boxes."""
    wide = _wide(rows, {"pointing": None, "energy_pointing": None, "box_share": None}, ["variant", "image_id"])
    maps = wide.assign(set=set_name, hit=wide.pointing, energy=wide.energy_pointing, valid=True,
                       difficult=wide.box_share < 100 * DIFFICULT_SHARE)
    like = torch.zeros(len(data.ids), *data.images.shape[-2:], device=data.images.device)
    baseline = localisation_rows(set_name, {}, data.boxes, data.box_labels, data.targets[:, 0], data.ids, like=like)
    columns = ["set", "variant", "image_id", "hit", "energy", "valid", "difficult"]
    frame = pd.concat([baseline[baseline.valid], maps[columns]], ignore_index=True)
    if set(frame.loc[frame.variant == CENTRE, "image_id"]) != set(maps.image_id):
        raise ValueError(f"{set_name}: the localisation rows hold other images than the data set's boxes. Fix: rerun "
                         "the pipeline's evaluate jobs, or check evaluation.val_dir.")
    return frame[columns].reset_index(drop=True)
