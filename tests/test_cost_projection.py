"""The full profile's projections: GPU rates per (method, metric group) from `make gpu-check`'s benchmark files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tools.evaluation_summary import cost_table, gpu_rates
from tools.gpu_check import shard_rates


def _bench(tmp_path, method, group, seconds):
    path = tmp_path / "efficientnet_lite0" / method / "predicted" / group / "shard-0000.tsv"
    path.parent.mkdir(parents=True)
    path.write_text("s\th:m:s\tmax_rss\n" f"{seconds}\t0:00:{int(seconds):02d}\t100\n")


def test_shard_rates_are_per_method_and_group(tmp_path):
    _bench(tmp_path, "gradcam", "ad_ic", 8.0)
    _bench(tmp_path, "gradcam", "causal", 32.0)
    _bench(tmp_path, "rise", "ad_ic", 64.0)
    assert shard_rates(tmp_path, images=64) == {"gradcam": {"ad_ic": 8.0, "causal": 2.0}, "rise": {"ad_ic": 1.0}}


def test_projected_gpu_hours_count_each_group_once(tmp_path):
    bench = pd.DataFrame([{"model": "m", "method": "gradcam", "target_rule": "predicted", "group": g, "shard": "0000",
                           "images": 16, "s": 16.0, "cpu_time": 1.0, "max_rss": 100.0} for g in ("ad_ic", "causal")])
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"evaluate_images_per_s": {"gradcam": {"ad_ic": 1.0, "causal": 0.5}}}))
    rates = gpu_rates(path)
    assert rates == {("gradcam", "ad_ic"): 1.0, ("gradcam", "causal"): 0.5}
    cost = cost_table(bench, 3600, 128, rates=rates).set_index("group")
    assert cost.projected_gpu_hours.to_dict() == {"ad_ic": 1.0, "causal": 2.0}  # 3600 images at 1 and 0.5 per s
    assert cost.projected_cpu_hours["ad_ic"] == pytest.approx(1.0)  # 1 s per image, one thread
    assert cost_table(bench, 3600, 128, rates={}).projected_gpu_hours.isna().all()
    assert gpu_rates(tmp_path / "missing.json") == {}
