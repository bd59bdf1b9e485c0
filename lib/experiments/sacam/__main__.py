"""``python -m lib.experiments.sacam``: SA-CAM's selection grid on the training sample, the pipeline's ``select_sacam``.

    python -m lib.experiments.sacam --model efficientnet_lite0 --layer last-block --n-select 2 \\
        --thresholds none,0.5 --lambdas 0,1,3 --perturbation blur --out results/selection/sacam_..._last-block.csv

Scores every grid point (thresholds x lambda1 x lambda2) on the first ``--n-select`` images of the seeded order
of ``--train-dir`` for their labels (:func:`.selection.selection_grid`: insertion AUC - deletion AUC, UCAG's
protocol) and writes one row per image and point. The chosen point is not stored: every reader derives it from
the grid with the same rule (:func:`lib.cams.sacam.parameters_from_grid`), the evaluate jobs of SA-CAM's
``selection`` setting and notebook 03 alike. The file is written under a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from lib.cams.sacam import PERTURBATIONS, parameters_from_grid
from lib.config import resolve_device, split_dir
from lib.models import load_model
from lib.process import finish

from .data import resolve_layer, selection_sample, stack
from .selection import parse_grid, selection_grid


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lib.experiments.sacam", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a name from lib.models (e.g. efficientnet_lite0)")
    p.add_argument("--layer", default="default", help="'default', 'last-block' or a module name")
    p.add_argument("--data-dir", default="", help="root of the data sets ('' = lib.config.data_dir's rule)")
    p.add_argument("--train-dir", default="imagenet-train-1000", help="a folder under --data-dir, or a path")
    p.add_argument("--n-select", type=int, required=True, help="training images of the selection")
    p.add_argument("--thresholds", default="none,0.5", help="key-area thresholds ('none': every pixel)")
    p.add_argument("--lambdas", default="0,1", help="values of lambda1 and of lambda2")
    p.add_argument("--perturbation", default="blur", choices=PERTURBATIONS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="the grid's CSV file")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.time()
    device = resolve_device(args.device)
    model = load_model(args.model, device=device)
    layer = resolve_layer(model, args.layer)
    thresholds, lambdas, _ = parse_grid(args.thresholds, args.lambdas, "0.1,0.2,0.3")  # (no cases here)
    train, checked = selection_sample(model, split_dir(args.train_dir, args.data_dir or None), args.seed, args.n_select)
    images, labels, ids = stack(train, device)
    grid, _ = selection_grid(model, layer, images, labels, ids, thresholds, lambdas, args.perturbation, args.seed,
                             args.batch_size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    grid.to_csv(tmp, index=False)
    os.replace(tmp, out)
    print(f"SA-CAM selection at {layer} on {len(ids)} training images ({checked} checksums verified): "
          f"{len(grid)} rows -> {out}; chosen {parameters_from_grid(grid)} in {time.time() - start:.1f} s on {device}")


if __name__ == "__main__":
    main()
    finish()  # every file is written and closed: skip the interpreter's teardown (lib.process)
