"""Evaluate one shard: maps from the map store, the metric group's rows, one Parquet file.

:func:`evaluate_shard` computes; :func:`shard_rows` reads a shard's file or computes and writes it
(atomically, so an interrupted run leaves no half-written file); :func:`read_rows` concatenates files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from lib.analysis.map_store import MapStore, describe
from lib.cams.targets import resolve_targets
from lib.analysis.draws import seeded_order
from lib.data import ImageFolder, collate_samples

from .methods import build_method
from .shards import parse_part, part_names, shard_ids, shard_path
from .suite import GROUPS, SuiteSettings, group_rows

__all__ = ["ROW_COLUMNS", "TARGET_RULES", "EvalSpec", "evaluate_shard", "shard_rows", "dataset_rows", "read_rows",
           "write_rows"]

log = logging.getLogger(__name__)

ROW_COLUMNS = ("image_id", "model", "method", "target_rule", "target", "metric", "protocol", "value", "settings")
"""One row per (image, metric, protocol); ``settings``: :func:`lib.analysis.map_store.describe` of the method."""

TARGET_RULES = ("predicted", "label")
"""The class each map explains: the model's top-1 class, or the image's ground-truth label."""


@dataclass(frozen=True)
class EvalSpec:
    """What a shard's rows are of: model, method key with its settings, target rule, metric group."""

    model: str
    method: str
    target: str = "predicted"
    group: str = "ad_ic"
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.target not in TARGET_RULES:
            raise ValueError(f"Unknown target rule {self.target!r}. Fix: use one of {', '.join(TARGET_RULES)}.")
        if self.group not in GROUPS:
            raise ValueError(f"Unknown metric group {self.group!r}. Fix: use one of {', '.join(GROUPS)}.")

    def path(self, root: str | Path, shard: int | str) -> Path:
        return shard_path(root, self.model, self.method, self.target, self.group, shard)


def _targets(model, images: torch.Tensor, labels: torch.Tensor, rule: str) -> torch.Tensor:
    if rule == "label":
        return labels.to(images.device)
    with torch.no_grad():
        return resolve_targets(model(images), "predicted")[:, 0]


def evaluate_shard(model, spec: EvalSpec, dataset, store: MapStore, suite: SuiteSettings = SuiteSettings(),
                   batch_size: int = 16, cam=None, progress: bool = True, companions: Sequence = ()) -> pd.DataFrame:
    """The rows (:data:`ROW_COLUMNS`) of ``spec``'s metric group for every image of ``dataset``
    (a data set yielding :class:`lib.data.Sample`): maps of ``spec.method`` for ``spec.target``
    from ``store`` (computed where missing), then :func:`.suite.group_rows` per batch.

    ``companions``: CAM objects of other method keys whose maps come from the same passes (UCAG's
    variants, :func:`lib.cams.ucag.maps_sharing_passes`): their maps of the same images and targets are made
    with this method's and stored (:meth:`MapStore.maps_many`), for their own jobs to read."""
    cam = build_method(spec.method, model, spec.settings) if cam is None else cam
    settings = describe(cam)
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
    rows = []
    for batch in tqdm(loader, desc=f"{spec.method} {spec.group}", unit="batch", disable=not progress):
        batch = batch.to(device)
        targets = _targets(model, batch.images, batch.labels, spec.target)
        maps = store.maps_many([cam, *companions], batch.images, list(batch.image_ids), targets)[0]
        for k, metric, proto, value in group_rows(spec.group, model, batch.images, maps, targets, batch, suite):
            rows.append((batch.image_ids[k], spec.model, spec.method, spec.target, int(targets[k]), metric, proto,
                         value, settings))
    frame = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    if not frame["value"].notna().all():
        raise RuntimeError(f"{spec}: NaN metric values; the maps or the model gave non-finite numbers.")
    return frame


def write_rows(rows: pd.DataFrame, path: str | Path) -> Path:
    """``rows`` as Parquet (pyarrow) at ``path``, written to a temporary name and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rows.to_parquet(tmp, engine="pyarrow", index=False)
    os.replace(tmp, path)
    return path


def read_rows(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The rows of every file in ``paths``, concatenated; raises naming a missing file."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"missing evaluation rows {missing[:3]}{' ...' if len(missing) > 3 else ''}. "
                                "Fix: run the pipeline's evaluate rule (snakemake), or lib.evaluation.shard_rows.")
    frames = [pd.read_parquet(p, engine="pyarrow") for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(ROW_COLUMNS))


def shard_rows(root: str | Path | None, model, spec: EvalSpec, shard: int | str, dataset, store: MapStore,
               suite: SuiteSettings = SuiteSettings(), batch_size: int = 16, cam=None,
               progress: bool = True, companions: Sequence = ()) -> pd.DataFrame:
    """Shard ``shard``'s rows (a number, or a head's name: lib.evaluation.shards): read from
    ``spec.path(root, shard)`` when that file exists and was computed with the same method settings, else :func:`evaluate_shard` on ``dataset`` (the shard's
    images) and written there (``root=None``: computed, not written); ``companions`` as in :func:`evaluate_shard`."""
    cam = build_method(spec.method, model, spec.settings) if cam is None else cam
    path = spec.path(root, shard) if root else None
    if path is not None and path.is_file():
        rows = pd.read_parquet(path, engine="pyarrow")
        same_settings = len(rows) > 0 and set(rows["settings"]) == {describe(cam)}
        ids, wanted = set(rows["image_id"]), {str(i) for i in dataset.ids}
        same_images = ids <= wanted if spec.group == "localisation" else ids == wanted  # no box: no row
        if same_settings and same_images:
            return rows
        log.warning("%s holds %s; recomputing it", path, "other images (another seed or shard size?)"
                    if same_settings else f"other settings ({sorted(set(rows['settings']))[:1]})")
    rows = evaluate_shard(model, spec, dataset, store, suite, batch_size, cam=cam, progress=progress,
                          companions=companions)
    if path is not None:
        write_rows(rows, path)
    return rows


def part_ids(ids: Sequence[str], part: int | str, shard_size: int, seed: int) -> list[str]:
    """The ids of a part (lib.evaluation.shards): shard ``part`` of ``shard_size``, or a head's first n ids."""
    shard, head = parse_part(part)
    return shard_ids(ids, shard, head or shard_size, seed)


def dataset_rows(model, model_name: str, cams: Mapping[str, tuple[str, Any]], dataset, store: MapStore, *,
                 target: str = "predicted", group: str = "ad_ic", eval_dir: str | Path | None = None,
                 shard_size: int = 32, seed: int = 0, suite: SuiteSettings = SuiteSettings(), batch_size: int = 16,
                 progress: bool = True) -> pd.DataFrame:
    """A notebook's rows: for each ``{name: (method key, CAM object)}`` of ``cams``, the rows of every
    image of ``dataset``, with ``method`` set to ``name``, in the data set's image order.

    When ``dataset`` is an :class:`lib.data.ImageFolder` holding the first ``n`` images of its folder's
    seeded order (``seed``; how the notebooks draw), they are read shard by shard (:func:`shard_rows`:
    the pipeline's files under ``eval_dir``, or computed here and written there when missing;
    ``eval_dir=None``: computed, not written), or as one head when ``n`` is smaller than a shard
    (:func:`lib.evaluation.shards.part_names`). Any other data set (the packaged photos) is evaluated as is.
    """
    ids = [str(i) for i in getattr(dataset, "ids", None) or [dataset[k].image_id for k in range(len(dataset))]]
    shards: list[tuple[int | None, Any]] = [(None, dataset)]
    if isinstance(dataset, ImageFolder):
        every = ImageFolder(dataset.root, dataset.preprocess).ids
        if set(ids) == set(seeded_order(every, seed)[:len(ids)]):
            shards = [(k, ImageFolder(dataset.root, dataset.preprocess, ids=part_ids(every, k, shard_size, seed)))
                      for k in part_names(len(ids), shard_size, len(every))]
    parts = []
    for name, (key, cam) in cams.items():
        spec = EvalSpec(model_name, key, target, group)
        for k, part in shards:
            rows = (evaluate_shard(model, spec, part, store, suite, batch_size, cam=cam, progress=progress) if k is None
                    else shard_rows(eval_dir, model, spec, k, part, store, suite, batch_size, cam=cam, progress=progress))
            parts.append(rows.assign(method=name))
    rows = pd.concat(parts, ignore_index=True)
    rows = rows[rows.image_id.isin(ids)]
    order = {i: k for k, i in enumerate(ids)}
    names = {n: k for k, n in enumerate(cams)}
    return rows.sort_values(["method", "image_id"], key=lambda c: c.map(names if c.name == "method" else order),
                            kind="stable").reset_index(drop=True)
