"""``python -m lib.evaluation``: one shard's rows, the command of the pipeline's ``evaluate`` rule.

    python -m lib.evaluation --model efficientnet_lite0 --method gradcam --target predicted \\
        --group ad_ic --shard 0 --shard-size 32 --out results/eval/.../shard-0000.parquet
    python -m lib.evaluation ... --method rise --head 8 --out results/eval/.../head-0008.parquet

``--head N``: the first N images of the seeded order (shard 0 of size N; lib.evaluation.shards).
``--companions '{"ucag-gradcam++": {}, ...}'``: other keys whose maps this job makes in the same passes
(UCAG's variants share their crop passes) and stores in the map store; their own jobs then read them.

The shard's images are checked against the data set's SHA256SUMS before anything is computed.
"""

from __future__ import annotations

import argparse
import json
import time

from lib.analysis.map_store import MapStore
from lib.config import resolve_device, split_dir
from lib.data import ImageFolder, verify_checksums
from lib.models import load_model
from lib.process import finish

from .methods import build_method
from .run import TARGET_RULES, EvalSpec, part_ids, shard_rows, write_rows
from .shards import head_name, part_name
from .suite import GROUPS, SuiteSettings


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lib.evaluation", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a name from lib.models (e.g. efficientnet_lite0)")
    p.add_argument("--method", required=True, help="a method key (lib.evaluation.methods)")
    p.add_argument("--settings", default="{}", help="the method's settings as a JSON object")
    p.add_argument("--companions", default="{}",
                   help="other method keys whose maps come from the same passes (UCAG's variants), as a JSON object "
                        "{key: settings}: made with this method's maps and stored in --map-store for their own jobs")
    p.add_argument("--target", default="predicted", choices=TARGET_RULES)
    p.add_argument("--group", default="ad_ic", choices=sorted(GROUPS))
    part = p.add_mutually_exclusive_group(required=True)
    part.add_argument("--shard", type=int, help="the shard number (with --shard-size)")
    part.add_argument("--head", type=int, help="the first N images of the seeded order instead of a shard")
    p.add_argument("--shard-size", type=int, help="images per shard (with --shard)")
    p.add_argument("--seed", type=int, default=0, help="the seeded order the shards slice")
    p.add_argument("--data-dir", default="", help="root of the data sets ('' = lib.config.data_dir's rule)")
    p.add_argument("--val-dir", default="imagenet-val-1300", help="a folder under --data-dir, or a path")
    p.add_argument("--map-store", default="", help="folder of the map store ('' = no store)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True, help="the shard's Parquet file")
    args = p.parse_args(argv)
    if args.shard is not None and args.shard_size is None:
        p.error("--shard needs --shard-size (the images per shard).")
    if args.head is not None and args.head < 1:
        p.error(f"--head must be >= 1, got {args.head}.")
    return args


def json_object(flag: str, text: str, example: str) -> dict:
    """``text`` parsed as a JSON object; exits naming ``flag`` and the fix otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f"{flag} {text!r} is not JSON ({err}). Fix: pass an object, e.g. '{example}'.")
    if not isinstance(value, dict):
        raise SystemExit(f"{flag} {text!r} is not a JSON object. Fix: pass an object, e.g. '{example}'.")
    return value


def main(argv=None) -> None:
    args = parse_args(argv)
    settings = json_object("--settings", args.settings, '{"n_masks": 4000}')
    companions = json_object("--companions", args.companions, '{"ucag-gradcam++": {}}')
    if companions and not args.map_store:
        raise SystemExit("--companions makes maps for other jobs to read from the map store, but --map-store is empty. "
                         "Fix: give --map-store, or leave --companions out.")
    start = time.time()
    device = resolve_device(args.device)
    model = load_model(args.model, device=device)
    root = split_dir(args.val_dir, args.data_dir or None)
    part = args.shard if args.head is None else head_name(args.head)
    ids = part_ids(ImageFolder(root, model.preprocess).ids, part, args.shard_size, args.seed)
    checked = verify_checksums(root, names=[f"images/{i}" for i in ids])
    dataset = ImageFolder(root, model.preprocess, ids=ids)
    spec = EvalSpec(args.model, args.method, args.target, args.group, settings)
    rows = shard_rows(None, model, spec, part, dataset, MapStore(args.map_store or None, args.model),
                      SuiteSettings(batch_size=args.batch_size), args.batch_size,
                      companions=[build_method(key, model, value) for key, value in companions.items()])
    write_rows(rows, args.out)
    print(f"{spec.method} {spec.group} {part_name(part)}: {len(ids)} images ({checked} checksums verified), "
          f"{len(rows)} rows -> {args.out} in {time.time() - start:.1f} s on {device}")


if __name__ == "__main__":
    main()
    finish()  # every file is written and closed: skip the interpreter's teardown (lib.process)
