"""The full profile's tables: every shard's rows summarised, and the measured cost per shard projected.

    python -m tools.evaluation_summary --eval-dir results/eval --benchmarks results/benchmarks/evaluate \\
        --total-images 1300 --shard-size 32 --summary figures/full/evaluation_summary.csv \\
        --cost figures/full/evaluation_cost.csv

* summary: per (model, method, target rule, metric, protocol) the n images, the mean and its 95 %
  interval (lib.analysis.tables.summarize: Student t; Clopper-Pearson for the 0/100 metrics
  ``increase`` and ``pointing``);
* cost: per (model, method, target rule, metric group) the shards measured, their images, the wall
  seconds per image and per shard, the core-seconds per image (wall x the job's ``--threads``: what the
  job holds of the machine; Snakemake's sampled ``cpu_time`` misses the jobs shorter than its sampling
  interval, so it is kept only as ``sampled_cpu_time``) and peak memory (the evaluate rule's benchmark
  files: ``s``, ``cpu_time``, ``max_rss``), and the projection to ``--total-images``: CPU-hours
  (core-seconds per image x images) and, when ``benchmarks/results/gpu.json`` holds a GPU's measured
  rate (``make gpu-check``), GPU hours; without one the GPU column is empty.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from lib.analysis.tables import summarize
from lib.evaluation import read_rows

ROOT = Path(__file__).resolve().parent.parent
BINARY_METRICS = ("increase", "pointing")
KEYS = ["model", "method", "target_rule", "metric", "protocol"]


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """n, mean and interval per (model, method, target rule, metric, protocol)."""
    keys = [k if k != "metric" else "measure" for k in KEYS]  # summarize names its value column "metric"
    frame = rows.rename(columns={"metric": "measure"})
    parts = [summarize(part, "value", keys, binary=["value"] if binary else []).drop(columns="metric")
             for binary, part in frame.groupby(frame.measure.isin(BINARY_METRICS))]
    table = pd.concat(parts, ignore_index=True).rename(columns={"measure": "metric"})
    return table.sort_values(KEYS).reset_index(drop=True)


def benchmark_frame(benchmarks: Path, eval_dir: Path) -> pd.DataFrame:
    """One row per measured shard: its wildcards, images (from its rows), s, cpu_time, max_rss."""
    rows = []
    for tsv in sorted(benchmarks.rglob("shard-*.tsv")):
        model, method, target, group = tsv.relative_to(benchmarks).parts[:4]
        shard = eval_dir / model / method / target / group / tsv.name.replace(".tsv", ".parquet")
        if not shard.is_file():
            continue
        bench = pd.read_csv(tsv, sep="\t").iloc[-1]
        images = pd.read_parquet(shard, columns=["image_id"]).image_id.nunique()
        rows.append({"model": model, "method": method, "target_rule": target, "group": group, "shard": tsv.stem,
                     "images": images, "s": float(bench["s"]), "cpu_time": float(bench["cpu_time"]),
                     "max_rss": float(bench["max_rss"])})
    return pd.DataFrame(rows, columns=["model", "method", "target_rule", "group", "shard", "images", "s", "cpu_time",
                                       "max_rss"])


def gpu_rates(path: Path | None = None) -> dict[tuple[str, str], float]:
    """{(method, metric group): measured GPU images per second} from benchmarks/results/gpu.json
    (``make gpu-check``: ``evaluate_images_per_s`` is {method: {group: rate}}), else {}."""
    path = path or ROOT / "benchmarks" / "results" / "gpu.json"
    if not path.is_file():
        return {}
    rates = json.loads(path.read_text()).get("evaluate_images_per_s", {})
    return {(m, g): float(v) for m, groups in rates.items() for g, v in groups.items()}


def cost_table(bench: pd.DataFrame, total_images: int, shard_size: int, threads: int = 1,
               rates: dict[tuple[str, str], float] | None = None) -> pd.DataFrame:
    """Per (model, method, target rule, group): measured cost per image and the projection to total_images
    (``threads``: the threads each job had, so core-seconds = wall seconds x threads; GPU hours from the
    (method, group) ``rates``, by default :func:`gpu_rates`)."""
    keys = ["model", "method", "target_rule", "group"]
    per = bench.groupby(keys).agg(shards=("shard", "count"), images=("images", "sum"), s=("s", "sum"),
                                  sampled_cpu_time=("cpu_time", "sum"), max_rss_mb=("max_rss", "max")).reset_index()
    per["wall_s_per_image"] = per.s / per.images
    per["cpu_s_per_image"] = per.wall_s_per_image * threads
    per["wall_s_per_shard"] = per.wall_s_per_image * shard_size
    per["projected_images"] = total_images
    per["projected_cpu_hours"] = per.cpu_s_per_image * total_images / 3600
    rates = gpu_rates() if rates is None else rates
    per["projected_gpu_hours"] = [total_images / rates[(m, g)] / 3600 if (m, g) in rates else float("nan")
                                  for m, g in zip(per.method, per.group)]
    return per


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eval-dir", type=Path, required=True)
    p.add_argument("--benchmarks", type=Path, required=True)
    p.add_argument("--total-images", type=int, required=True)
    p.add_argument("--shard-size", type=int, required=True)
    p.add_argument("--threads", type=int, default=1, help="threads of each evaluate job (config threads.evaluate)")
    p.add_argument("--summary", type=Path, required=True)
    p.add_argument("--cost", type=Path, required=True)
    args = p.parse_args(argv)
    rows = read_rows(sorted(args.eval_dir.rglob("shard-*.parquet")))
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    summary_table(rows).to_csv(args.summary, index=False)
    cost = cost_table(benchmark_frame(args.benchmarks, args.eval_dir), args.total_images, args.shard_size, args.threads)
    cost.to_csv(args.cost, index=False)
    print(f"{len(rows)} rows -> {args.summary}; {len(cost)} (method, group) costs -> {args.cost}; "
          f"projected {cost.projected_cpu_hours.sum():.1f} CPU-hours for {args.total_images} images")


if __name__ == "__main__":
    main()
