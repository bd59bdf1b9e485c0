"""Does L-CAM-Fm's feature cache keep results in float16, and what do the cache's views buy? (issue 20, item 1)

    python benchmarks/lcam_fm_cache.py                 # 250 training images, 4 views, 1 thread
    python benchmarks/lcam_fm_cache.py --images 1000 --views 8

Builds one float32 feature cache (:mod:`lib.lcam_features`) of ``--images`` seeded training images of the
sample with ``--views`` random views each, then trains L-CAM-Fm (the full loss, the default profile's
schedule) three ways from the CAM start, one after another in this process:

* ``float32``: on the cache as built;
* ``float16``: on the same feature maps rounded to float16 and back (what the float16 cache stores), so the
  difference between the two is the storage precision alone;
* ``half the views``: on the first ``views // 2`` views of the float32 cache (what more views change).

and compares each with ``float32``: the relative weight difference ``||W - W_32|| / ||W_32||``, the mean
absolute difference of the min-max normalised maps on the held-out views, the best epoch and its
validation loss. Also the cache's build time per view and its size per view in each precision. Writes
``<out>/lcam_fm_cache.json``. Nothing is asserted and CI never times anything.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lib.config import split_dir  # noqa: E402
from lib.data import ImageFolder, seeded_subset  # noqa: E402
from lib.lcam_features import (  # noqa: E402
    FeatureCache,
    FeatureTrainConfig,
    build_feature_cache,
    load_feature_cache,
    map_distance,
    train_on_features,
    weight_distance,
)
from lib.models import load_model  # noqa: E402


def train(model, cache: FeatureCache, args) -> tuple[object, dict, float]:
    config = FeatureTrainConfig(args.model, lr=args.lr, max_epochs=args.max_epochs, plateau=args.plateau,
                                patience=args.patience, cache_views=cache.views, cache_seed=0)
    start = time.perf_counter()
    attention, history = train_on_features(model, cache, config, progress=False)
    best = [row for row in history if row["best"]][-1]
    return attention, best, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=250)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--plateau", type=int, default=2)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    root = split_dir("imagenet-train-1000", None)
    full = ImageFolder(root, model.preprocess)
    folder = ImageFolder(root, model.preprocess, ids=seeded_subset(full.ids, args.images, 0))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        exact = load_feature_cache(build_feature_cache(model, folder, args.views, 0, Path(tmp) / "cache",
                                                       dtype="float32", progress=False))
        build = time.perf_counter() - start
    views_total = exact.features.shape[0] * exact.features.shape[1]
    variants = {
        "float32": exact,
        "float16": FeatureCache(exact.features.half().float(), exact.targets, exact.meta),
        "half the views": FeatureCache(exact.features[: args.views // 2 + 1], exact.targets[: args.views // 2 + 1],
                                       exact.meta),
    }
    trained = {name: train(model, cache, args) for name, cache in variants.items()}
    reference = trained["float32"][0]
    held_out = exact.features[0], exact.targets[0]
    rows = {}
    for name, (attention, best, seconds) in trained.items():
        rows[name] = {"best_epoch": best["epoch"], "val_loss": best["val_loss"], "seconds": seconds,
                      "weight_difference_to_float32": weight_distance(attention, reference),
                      "map_difference_to_float32": float(map_distance(attention, reference, *held_out).mean()),
                      "map_distance_from_start": best["map_distance"], "weight_distance_from_start":
                          best["weight_distance"]}
    per_view = exact.features[0, 0].numel()
    result = {"machine": {"processor": platform.processor() or platform.machine(), "threads": args.threads,
                          "torch": torch.__version__},
              "settings": vars(args) | {"out": None},
              "cache": {"views_built": views_total, "seconds_per_view": build / views_total,
                        "bytes_per_view_float16": per_view * 2, "bytes_per_view_float32": per_view * 4},
              "training": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lcam_fm_cache.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
