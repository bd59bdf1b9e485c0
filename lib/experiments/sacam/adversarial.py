"""Tables 4-5 (adversarial verification) and Fig. 8 (cascading randomisation), per image.

Tables 4-5, our protocol (the paper defines none; :func:`lib.metrics.adversarial_verification`):
the top ``fraction`` of a map's pixels (Cases 1-3) pasted at a random offset over ``n_hosts`` host
images of other classes; **accuracy** = % of the hosts on which the composite is still classified
as the image's class, **fading rate** = mean % of the class probability lost. Per image the
accuracy is a rate over the hosts: with one host it is a 0/100 outcome (a rate over images:
Clopper-Pearson), with several a graded value (a mean over images: Student t).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from lib.analysis.tables import summarize
from lib.metrics import adversarial_verification, cascading_randomization

__all__ = ["PAPER_TABLES_4_5", "case_names", "adversarial_frame", "accuracy_rule", "adversarial_table",
           "cascade_frame"]

PAPER_TABLES_4_5 = {  # the paper's Tables 4-5 (VGG-19), Case-1..3
    "accuracy": {"Grad-CAM": [18.40, 21.59, 29.73], "Score-CAM": [22.31, 24.18, 28.11],
                 "SA-CAM": [22.35, 29.26, 34.67]},
    "fading": {"Grad-CAM": [75.56, 71.32, 60.51], "Score-CAM": [70.37, 67.88, 62.66],
               "SA-CAM": [70.31, 61.14, 53.95]},
}


def case_names(fractions: Sequence[float]) -> list[str]:
    return [f"Case-{c}" for c in range(1, len(fractions) + 1)]


def adversarial_frame(model: nn.Module, images: torch.Tensor, maps: Mapping[str, torch.Tensor], targets: torch.Tensor,
                      image_ids: Sequence[str], hosts: torch.Tensor, fractions: Sequence[float], seed: int,
                      batch_size: int) -> pd.DataFrame:
    """Per case, method and image: ``case, core fraction, method, image_id, accuracy, fading`` and
    ``case_image`` (``"Case-k/<image_id>"``: the unit column of the registry's claims that average
    the three cases per image). Case ``k``'s offsets are seeded with ``seed + k``."""
    rows = []
    for case, fraction in zip(case_names(fractions), fractions):
        k = int(case.split("-")[1])
        for name, m in maps.items():
            result = adversarial_verification(model, images, m, targets, hosts, fraction=fraction, seed=seed + k,
                                              batch_size=batch_size)
            rows += [{"case": case, "core fraction": fraction, "method": name, "image_id": i, "accuracy": float(a),
                      "fading": float(f), "case_image": f"{case}/{i}"}
                     for i, a, f in zip(image_ids, result["accuracy"], result["fading"])]
    return pd.DataFrame(rows)


def accuracy_rule(n_hosts: int) -> str:
    """How Table 4's per-image accuracy is summarised: ``"clopper-pearson"`` when it is a 0/100
    outcome (one host), ``"t"`` when it is a rate over several hosts."""
    return "clopper-pearson" if n_hosts == 1 else "t"


def adversarial_table(frame: pd.DataFrame, metric: str, n_hosts: int) -> pd.DataFrame:
    """Table 4 (``metric="accuracy"``, higher is better) or 5 (``"fading"``, lower is better): per
    case and method the mean over images with its interval (:func:`accuracy_rule` for accuracy,
    Student t for the fading rate), beside the paper's value; ``rule`` and ``hosts`` say how."""
    binary = ["accuracy"] if metric == "accuracy" and accuracy_rule(n_hosts) == "clopper-pearson" else []
    table = summarize(frame, metric, ["case", "core fraction", "method"], binary=binary)
    table["paper"] = [PAPER_TABLES_4_5[metric][m][int(c.split("-")[1]) - 1] for c, m in zip(table.case, table.method)]
    table["rule"] = "clopper-pearson" if binary else "t"
    table["hosts"] = n_hosts
    return table


def cascade_frame(model: nn.Module, factories: Mapping[str, Callable], images: torch.Tensor, targets: torch.Tensor,
                  image_ids: Sequence[str], layers: Sequence[str], seed: int,
                  originals: Mapping[str, torch.Tensor] | None = None) -> tuple[pd.DataFrame, dict]:
    """Fig. 8 (Adebayo et al.): per method, step and image the Spearman and SSIM similarity of the
    map after randomising ``layers[:step]`` to the trained model's map: ``method, step,
    randomised up to, image_id, spearman, ssim``, and the maps ``{method: [S + 1, N, H, W]}``.
    ``originals``: ``{method: the trained model's maps of these images}`` where already made (the
    notebook's evaluation maps, from the map store), so step 0 is not computed again."""
    rows, maps = [], {}
    for name, factory in factories.items():
        result = cascading_randomization(model, factory, images, targets, layers=list(layers), seed=seed,
                                         original=(originals or {}).get(name))
        maps[name] = result["maps"].cpu()
        for step, layer_name in enumerate(result["layers"]):
            rows += [{"method": name, "step": step, "randomised up to": layer_name, "image_id": image_ids[k],
                      "spearman": float(result["spearman"][step, k]), "ssim": float(result["ssim"][step, k])}
                     for k in range(len(images))]
    return pd.DataFrame(rows), maps
