"""Figs 6-7 scored: class-specific maps on two-photo composites (the paper only shows one image each).

* Fig. 6, two classes: one map per class (SA-CAM explains both with one set of masked passes, an
  ``[N, 2]`` array of class ids); the energy-based pointing game of each map in its class's half.
* Fig. 7, one class twice: one map for the class; the map's energy in each half and the weaker
  half's share of the energy inside the photos (0.5: both objects covered equally, 0: one ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch

from lib.analysis.map_store import MapStore
from lib.analysis.tables import summarize
from lib.data import collate_samples
from lib.data.samples import Batch
from lib.metrics import energy_pointing_game

from .data import composite_dataset

__all__ = ["Composites", "load_composites", "two_class_energy", "same_class_energy", "multi_target_table"]

SIDES = ("left", "right")
SAME_CLASS = ("in the photos", "weaker half's share")


@dataclass
class Composites:
    """Composites on the device: the ``batch`` (images, both boxes), ``labels [N, 2]`` (left, right),
    the map store's ids (``"composite:<left id>+<right id>"``) and the layout (store settings)."""

    batch: Batch
    labels: torch.Tensor
    store_ids: list[str]
    layout: dict

    def __len__(self) -> int:
        return len(self.store_ids)


def load_composites(root: Path, labels: Mapping[str, int], pairs: Sequence[tuple[str, str]], preprocess,
                    device: torch.device | str) -> Composites:
    """The composites of ``pairs`` (left, right) of the sample in ``root``
    (:func:`lib.experiments.sacam.data.composite_dataset`), stacked on ``device``."""
    if not pairs:
        raise ValueError("no composites were drawn. Fix: check the sample (it needs correctly classified photos).")
    dataset = composite_dataset(root, labels, pairs, preprocess)
    batch = collate_samples([dataset[i] for i in range(len(dataset))]).to(device)
    return Composites(batch, torch.stack(list(batch.box_labels)).long(), [f"composite:{a}+{b}" for a, b in pairs],
                      {"composite_size": dataset.size, "background": dataset.background})


def two_class_energy(store: MapStore, cams: Mapping, comp: Composites, categories: Sequence[str]
                     ) -> tuple[pd.DataFrame, dict]:
    """Fig. 6: ``method, composite, class, side, energy`` (each class's map, its energy in its
    half) and the maps ``{method: [N, 2, H, W]}`` on the CPU."""
    rows, shown = [], {}
    batch, labels = comp.batch, comp.labels
    for name, cam in cams.items():
        both = store.maps(cam, batch.images, comp.store_ids, labels, **comp.layout)  # [N, 2, H, W]
        shown[name] = both.cpu()
        for side in (0, 1):
            energy = energy_pointing_game(both[:, side], batch.boxes, batch.box_labels, labels[:, side])["energy"]
            rows += [{"method": name, "composite": c, "class": categories[int(k)], "side": SIDES[side],
                      "energy": float(e)} for c, k, e in zip(batch.image_ids, labels[:, side], energy)]
    return pd.DataFrame(rows), shown


def same_class_energy(store: MapStore, cams: Mapping, comp: Composites) -> tuple[pd.DataFrame, dict]:
    """Fig. 7: ``method, composite, left, right, in the photos, weaker half's share`` (energy of
    the class's one map in each photo, their sum, and min / sum) and the maps ``{method: [N, H, W]}``."""
    rows, shown = [], {}
    batch, target = comp.batch, comp.labels[:, 0]
    for name, cam in cams.items():
        one = store.maps(cam, batch.images, comp.store_ids, target, **comp.layout)
        shown[name] = one.cpu()
        left, right = (energy_pointing_game(one, [b[k:k + 1] for b in batch.boxes],
                                            [lb[k:k + 1] for lb in batch.box_labels], target)["energy"] for k in (0, 1))
        inside = (left + right).clamp_min(1e-12)
        rows += [{"method": name, "composite": c, "left": float(a), "right": float(b), "in the photos": float(a + b),
                  "weaker half's share": float(torch.minimum(a, b) / s)}
                 for c, a, b, s in zip(batch.image_ids, left, right, inside)]
    return pd.DataFrame(rows), shown


def multi_target_table(two: pd.DataFrame, same: pd.DataFrame) -> pd.DataFrame:
    """Figs 6-7's table, one row per method and quantity, n = composites (the independent units):
    the energy in the class's half (mean of a composite's two classes), and for one class twice the
    energy in the photos and the weaker half's share (:func:`lib.analysis.tables.summarize`)."""
    per_composite = two.groupby(["method", "composite"], sort=False).energy.mean().reset_index()
    parts = [summarize(per_composite.rename(columns={"energy": "two classes: energy in the class's half"}),
                       "two classes: energy in the class's half", "method"),
             summarize(same.rename(columns={m: f"one class twice: {m}" for m in SAME_CLASS}),
                       [f"one class twice: {m}" for m in SAME_CLASS], "method")]
    return pd.concat(parts, ignore_index=True)
