"""SA-CAM's maps of the evaluation images and Tables 1-3: insertion and deletion in five groups.

* :func:`method_cams` / :func:`timed_maps`: Grad-CAM, Score-CAM and SA-CAM (and the four other
  CAMs of Fig. 4) on one layer, their maps through :class:`lib.analysis.map_store.MapStore`;
* :func:`table_rows` / :func:`frames_from_rows`: Tables 1-3's per-image deletion and insertion AUCs (UCAG's
  protocol, PROTOCOLS.md), overall = insertion - deletion (Table 3), and Fig. 9's curves, from the per-image
  evaluation rows (:mod:`lib.evaluation`, group ``causal_curves``: the pipeline's shards, or computed by the same
  code); :func:`auc_frame` computes the same directly (the layer check, the selection);
* :func:`group_table`, :func:`totals_table`, :func:`paired_differences`: Tables 1-3 and the paired
  differences as numbers (:func:`lib.analysis.tables.summarize` / :func:`~lib.analysis.tables.paired`);
* :func:`layer_check`: the tables' layer against the model's own CAM layer on the same images;
* :func:`curve_bands`: Fig. 9's mean curves with Student-t bands;
* :func:`cost_table`: forward passes per map (Sec. 3: Score-CAM ``C + 1``, SA-CAM ``2C + 1``).
"""

from __future__ import annotations

import time
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from lib.analysis.map_store import MapStore
from lib.analysis.stats import MIN_N, paired_t_rule
from lib.analysis.tables import paired, summarize
from lib.cams import AblationCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
from lib.cams.sacam import SACAM
from lib.evaluation import SuiteSettings, dataset_rows, parse_protocol
from lib.metrics import deletion_insertion

from .data import GROUPS

__all__ = ["METHODS", "ALL_METHODS", "PAPER_TABLES_1_3", "METHOD_KEYS", "table_rows", "frames_from_rows",
           "method_cams", "timed_maps", "causal_curves", "auc_pair",
           "auc_frame", "group_table", "totals_table", "paired_differences", "layer_check", "curve_bands",
           "cost_table"]

METHODS = ["Grad-CAM", "Score-CAM", "SA-CAM"]
"""The methods of Tables 1-5 and Figs 6-9."""
ALL_METHODS = ["Grad-CAM", "Grad-CAM++", "XGrad-CAM", "LayerCAM", "Ablation-CAM", "Score-CAM", "SA-CAM"]
"""The seven methods of Figs 4-5."""

PAPER_TABLES_1_3 = {  # the paper's Tables 1-3: Group-1..5, then Total (backbone and group sizes not given)
    "insertion": {"Grad-CAM": [0.342, 0.43, 0.426, 0.429, 0.297, 1.924],
                  "Score-CAM": [0.357, 0.467, 0.441, 0.442, 0.294, 2.001],
                  "SA-CAM": [0.362, 0.462, 0.447, 0.445, 0.319, 2.035]},
    "deletion": {"Grad-CAM": [0.077, 0.101, 0.128, 0.096, 0.062, 0.464],
                 "Score-CAM": [0.043, 0.056, 0.052, 0.057, 0.061, 0.269],
                 "SA-CAM": [0.051, 0.064, 0.066, 0.058, 0.062, 0.301]},
    "overall": {"Grad-CAM": 1.46, "Score-CAM": 1.732, "SA-CAM": 1.734},
}
ROWS = [*(f"Group-{g + 1}" for g in range(GROUPS)), "Total"]


def method_cams(net: nn.Module, layer: str, sacam_params: Mapping, perturbation: str, seed: int, batch_size: int,
                names: Sequence[str] = METHODS) -> dict:
    """The CAM objects of ``names`` on ``layer`` (Score-CAM with its authors' masks and class
    probability, ``C + 1`` passes; SA-CAM with ``sacam_params`` and ``perturbation``, ``2C + 1``)."""
    factories = {
        "Grad-CAM": lambda: GradCAM(net, layer), "Grad-CAM++": lambda: GradCAMPlusPlus(net, layer),
        "XGrad-CAM": lambda: XGradCAM(net, layer), "LayerCAM": lambda: LayerCAM(net, layer),
        "Ablation-CAM": lambda: AblationCAM(net, layer, batch_size=batch_size, progress=False),
        "Score-CAM": lambda: ScoreCAM(net, layer, batch_size=batch_size, progress=False),
        "SA-CAM": lambda: SACAM(net, layer, perturbation=perturbation, seed=seed, batch_size=batch_size,
                                progress=False, **sacam_params),
    }
    return {name: factories[name]() for name in names}


METHOD_KEYS = {"Grad-CAM": "gradcam-sacam-layer", "Score-CAM": "scorecam-sacam-layer", "SA-CAM": "sacam-selected"}
"""Tables 1-3's methods -> their keys in ``config/config.yaml`` ``evaluation.methods`` (the pipeline's rows:
notebook 03's layer on each device, SA-CAM at the ``select_sacam`` rule's chosen point)."""


def table_rows(net: nn.Module, cams: Mapping, dataset, store: MapStore, *, eval_dir: str | None = None,
               shard_size: int = 128, seed: int = 0, batch_size: int = 8) -> pd.DataFrame:
    """The ``causal_curves`` evaluation rows (:mod:`lib.evaluation`, UCAG's protocol, the images' labels) of each
    of :data:`METHODS` (CAM objects in ``cams``) on ``dataset`` (the first images of the seeded order): the
    pipeline's shards under ``eval_dir``, else computed with the maps of ``store``."""
    keyed = {name: (METHOD_KEYS[name], cams[name]) for name in METHODS}
    return dataset_rows(net, net.name, keyed, dataset, store, target="label", group="causal_curves",
                        eval_dir=eval_dir or None, shard_size=shard_size, seed=seed,
                        suite=SuiteSettings(batch_size=batch_size), batch_size=batch_size, progress=False)


def frames_from_rows(rows: pd.DataFrame, group_of: Mapping[str, str]) -> tuple[pd.DataFrame, dict]:
    """Tables 1-3's per-image frame (:func:`auc_frame`'s columns, AUCs in [0, 1]) and Fig. 9's curves
    (``{method: {mode: {"curves": [N, points]}}}``, probabilities) from ``causal_curves`` rows (values in %)."""
    frame, curves = [], {}
    for name in rows.method.unique():
        mine = rows[rows.method == name]
        auc = {mode: mine[mine.metric == mode].set_index("image_id").value / 100 for mode in ("deletion", "insertion")}
        ids = list(auc["deletion"].index)
        frame += [{"method": name, "group": group_of[k], "image_id": k, "deletion": float(auc["deletion"][k]),
                   "insertion": float(auc["insertion"][k]), "overall": float(auc["insertion"][k] - auc["deletion"][k])}
                  for k in ids]
        curves[name] = {}
        for mode in ("deletion", "insertion"):
            points = mine[mine.metric == f"{mode}_curve"]
            step = points.protocol.map(lambda p: int(parse_protocol(p)["point"]))
            table = points.assign(point=step).pivot(index="image_id", columns="point", values="value").loc[ids]
            curves[name][mode] = {"curves": torch.tensor(table.to_numpy() / 100)}
    return pd.DataFrame(frame), curves


def timed_maps(store: MapStore, cams: Mapping, images: torch.Tensor, image_ids: Sequence[str], targets: torch.Tensor,
               batch_size: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """``({method: maps [N, H, W]}, {method: seconds per map})``: each method's maps from the store
    (computed in chunks of ``batch_size`` images where not stored; the seconds include store reads)."""
    maps, seconds = {}, {}
    for name, cam in cams.items():
        t0 = time.perf_counter()
        maps[name] = torch.cat([store.maps(cam, images[s:s + batch_size], list(image_ids[s:s + batch_size]),
                                           targets[s:s + batch_size]) for s in range(0, len(images), batch_size)])
        seconds[name] = (time.perf_counter() - t0) / max(len(images), 1)
        if maps[name].shape != (len(images), *images.shape[-2:]) or not torch.isfinite(maps[name]).all():
            raise ValueError(f"{name}: maps of shape {tuple(maps[name].shape)} or not finite")
    return maps, seconds


def causal_curves(net: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                  batch_size: int) -> dict:
    """Deletion and insertion results (UCAG's protocol: 1792 px per step, zero / blurred substrate)."""
    return {mode: deletion_insertion(net, images, maps, targets, mode=mode, batch_size=batch_size)
            for mode in ("deletion", "insertion")}


def auc_pair(net: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, batch_size: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image deletion and insertion AUCs ``[N]`` on the CPU."""
    result = causal_curves(net, images, maps, targets, batch_size)
    return result["deletion"]["auc"].cpu(), result["insertion"]["auc"].cpu()


def auc_frame(net: nn.Module, images: torch.Tensor, maps: Mapping[str, torch.Tensor], targets: torch.Tensor,
              image_ids: Sequence[str], group_of: Mapping[str, str], batch_size: int) -> tuple[pd.DataFrame, dict]:
    """Tables 1-3's per-image values: ``method, group, image_id, deletion, insertion, overall``
    (overall = insertion - deletion, Table 3), and each method's curves (Fig. 9)."""
    rows, curves = [], {}
    for name, m in maps.items():
        curves[name] = causal_curves(net, images, m, targets, batch_size)
        d, i = curves[name]["deletion"]["auc"].cpu(), curves[name]["insertion"]["auc"].cpu()
        rows += [{"method": name, "group": group_of[k], "image_id": k, "deletion": float(a), "insertion": float(b),
                  "overall": float(b - a)} for k, a, b in zip(image_ids, d, i)]
    return pd.DataFrame(rows), curves


def _scaled(table: pd.DataFrame, factor: float) -> pd.DataFrame:
    return table.assign(**{c: table[c] * factor for c in ("mean", "low", "high")})


def group_table(aucs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Table 1 (``metric="insertion"``) or Table 2 (``"deletion"``): per method the mean AUC of
    each group and **Total** = the sum of the five group means (equal groups: 5 x the mean over all
    images, its interval 5 x the t interval of that mean), beside the paper's ``paper`` value."""
    groups = summarize(aucs, metric, ["method", "group"])
    total = _scaled(summarize(aucs, metric, "method"), GROUPS).assign(group="Total")
    table = pd.concat([groups, total], ignore_index=True)
    table["paper"] = [PAPER_TABLES_1_3[metric][m][ROWS.index(g)] for m, g in zip(table.method, table.group)]
    return table.sort_values(["method", "group"], key=lambda c: c.map(_order), ignore_index=True)


def _order(value):
    return ROWS.index(value) if value in ROWS else METHODS.index(value) if value in METHODS else value


def totals_table(aucs: pd.DataFrame) -> pd.DataFrame:
    """Table 3: the totals (5 x the per-image mean, with 5 x its t interval) of insertion, deletion
    and overall = insertion - deletion, per method, beside the paper's totals."""
    table = _scaled(summarize(aucs, ["insertion", "deletion", "overall"], "method"), GROUPS)
    paper = PAPER_TABLES_1_3
    table["paper"] = [paper[k][m] if k == "overall" else paper[k][m][-1] for m, k in zip(table.method, table.metric)]
    return table.sort_values("method", key=lambda c: c.map(_order), kind="stable", ignore_index=True)


def paired_differences(aucs: pd.DataFrame) -> pd.DataFrame:
    """Per-image paired differences (t rule) SA-CAM - Score-CAM, SA-CAM - Grad-CAM and
    Score-CAM - Grad-CAM of insertion, deletion and overall, in per-image AUC units (Total / 5)."""
    values = ["insertion", "deletion", "overall"]
    return pd.concat([paired(aucs, values, ["SA-CAM"], "Score-CAM"),
                      paired(aucs, values, ["SA-CAM", "Score-CAM"], "Grad-CAM")], ignore_index=True)


def layer_check(net: nn.Module, layer: str, store: MapStore, images: torch.Tensor, targets: torch.Tensor,
                image_ids: Sequence[str], aucs: pd.DataFrame, n_check: int, batch_size: int) -> pd.DataFrame:
    """Grad-CAM on every image and Score-CAM on the first ``n_check``, at ``layer`` (read from
    ``aucs``) and at the model's own CAM layer: ``method, layer`` and :func:`summarize`'s columns of
    deletion, insertion and overall. When ``layer`` is the model's own, one row says so."""
    if layer == net.target_layer:
        note = "the tables use the model's own CAM layer: no check needed"
        return pd.DataFrame([{"method": "all", "layer": layer, "metric": "", "mean": np.nan, "low": np.nan,
                              "high": np.nan, "n": 0, "note": note}])
    n_check = min(n_check, len(images))
    rows = []
    for name, n in (("Grad-CAM", len(images)), ("Score-CAM", n_check)):
        cam = method_cams(net, net.target_layer, {}, "blur", 0, batch_size, [name])[name]
        d, i = auc_pair(net, images[:n], store.maps(cam, images[:n], list(image_ids[:n]), targets[:n]), targets[:n],
                        batch_size)
        here = aucs[aucs.method == name].set_index("image_id").loc[list(image_ids[:n])]
        rows += [{"method": name, "layer": layer, "image_id": k, "deletion": a, "insertion": b, "overall": b - a}
                 for k, a, b in zip(image_ids[:n], here.deletion, here.insertion)]
        rows += [{"method": name, "layer": net.target_layer, "image_id": k, "deletion": float(a), "insertion": float(b),
                  "overall": float(b - a)} for k, a, b in zip(image_ids[:n], d, i)]
    return summarize(pd.DataFrame(rows), ["deletion", "insertion", "overall"], ["method", "layer"])


def curve_bands(curves: Mapping[str, dict], min_n: int = MIN_N) -> pd.DataFrame:
    """Fig. 9: per method and mode, the mean curve over the images at each step with its Student-t
    95% band (NaN below ``min_n`` images): ``method, mode, fraction, mean, low, high``."""
    frames = []
    for name, result in curves.items():
        for mode in ("deletion", "insertion"):
            values = result[mode]["curves"].detach().cpu().double().numpy()  # [N, steps]
            mean, low, high, _ = paired_t_rule(values.T)
            if values.shape[0] < min_n:
                low, high = np.full_like(mean, np.nan), np.full_like(mean, np.nan)
            frames.append(pd.DataFrame({"method": name, "mode": mode, "fraction": np.linspace(0, 1, values.shape[1]),
                                        "mean": mean, "low": low, "high": high}))
    return pd.concat(frames, ignore_index=True)


def cost_table(channels: int, seconds: Mapping[str, float]) -> pd.DataFrame:
    """Forward passes per map at a layer of ``channels`` channels (Grad-CAM 1 and one backward,
    Score-CAM ``C + 1``, SA-CAM ``2C + 1`` and one backward) and this run's seconds per map."""
    passes = {"Grad-CAM": (1, "1 (+1 backward)"), "Score-CAM": (channels + 1, "C + 1"),
              "SA-CAM": (2 * channels + 1, "2C + 1 (+1 backward)")}
    return pd.DataFrame([{"method": m, "forward passes per image": p, "formula": f,
                          "seconds per map (this run)": seconds.get(m, np.nan)} for m, (p, f) in passes.items()])

