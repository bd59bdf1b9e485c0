"""How much the training sample's re-encoding matters: EfficientNet-Lite0 on the upstream photos as
they are vs on our re-encoded copies (``imagenet-train-1000``), the same 1000 images.

    python tools/reencode_effect.py UPSTREAM_DIR [SAMPLE_DIR]

``UPSTREAM_DIR`` holds EliSchwartz/imagenet-sample-images' photos (e.g. a mirror's
``EliSchwartz/imagenet-sample-images/<commit>/``, or ``<data dir>/.downloads/...`` kept by
``make data DATA_ARGS=--keep-downloads``); ``SAMPLE_DIR`` defaults to the data directory's sample.
Prints top-1 accuracy on both, how many predictions agree, and the change of the true class's
probability. ``make data`` reproduces the re-encoding (so these differences never reach a result);
this measures what using the upstream files directly would have changed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.config import data_dir  # noqa: E402
from lib.data.build import train_name  # noqa: E402
from lib.models import load_model  # noqa: E402


def probabilities(model, files: list[Path], batch: int = 50) -> torch.Tensor:
    out = []
    for i in tqdm(range(0, len(files), batch), desc="Lite0", unit="batch"):
        x = torch.stack([model.preprocess(Image.open(f).convert("RGB")) for f in files[i:i + batch]])
        with torch.no_grad():
            out.append(model(x).softmax(1))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("upstream", type=Path)
    parser.add_argument("sample", type=Path, nargs="?", default=None)
    args = parser.parse_args(argv)
    sample = args.sample or data_dir() / "imagenet-train-1000"
    rows = list(csv.DictReader(open(sample / "labels.csv", newline="")))
    upstream = {train_name(p.name): p for p in args.upstream.glob("*.JPEG")}
    labels = torch.tensor([int(r["label"]) for r in rows])
    model = load_model("efficientnet_lite0")
    ours = probabilities(model, [sample / "images" / r["image"] for r in rows])
    orig = probabilities(model, [upstream[r["image"]] for r in rows])
    d = ours.gather(1, labels[:, None])[:, 0] - orig.gather(1, labels[:, None])[:, 0]
    print(f"n = {len(rows)}: top-1 re-encoded {(ours.argmax(1) == labels).float().mean():.1%}, "
          f"upstream {(orig.argmax(1) == labels).float().mean():.1%}; same prediction "
          f"{(ours.argmax(1) == orig.argmax(1)).float().mean():.1%}; p(true class) re-encoded - upstream: "
          f"mean {d.mean():+.4f}, mean |.| {d.abs().mean():.4f}, max |.| {d.abs().max():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
