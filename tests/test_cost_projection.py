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


def _gpu_summary(path, status="passed"):
    path.write_text(json.dumps({
        "device": "GPU X", "torch": "2.x", "gpu_jobs_at_once": 8, "images_per_shard": 64,
        "steps": [{"step": "one shard of every method", "status": status, "seconds": 320.0}],
        "evaluate_images_per_s": {"gradcam": {"ad_ic": 1.0, "causal": 0.5}, "rise": {"ad_ic": 2.0}}}))


def test_full_profile_gpu_columns_from_a_gpu_check(tmp_path):
    from benchmarks.full_profile import add_gpu_projection, gpu_text

    def result():
        return {"projected_images": 3600, "total": {"projected_gpu_hours": None},
                "methods": [{"method": "gradcam"}, {"method": "rise"}],
                "per_group": [{"method": "gradcam", "group": "ad_ic"}, {"method": "gradcam", "group": "causal"},
                              {"method": "rise", "group": "ad_ic"}, {"method": "rise", "group": "causal"}]}

    assert add_gpu_projection(result(), tmp_path / "missing.json") == result()
    _gpu_summary(tmp_path / "gpu.json")
    r = add_gpu_projection(result(), tmp_path / "gpu.json")
    assert [row["projected_gpu_hours"] for row in r["per_group"]] == [1.0, 2.0, 0.5, None]
    assert r["methods"] == [{"method": "gradcam", "projected_gpu_hours": 3.0}, {"method": "rise", "projected_gpu_hours": None}]
    assert r["total"]["projected_gpu_hours"] is None  # a (method, group) without a rate: no total
    assert r["gpu"]["projected_wall_hours"] == pytest.approx(320 * 3600 / 64 / 3600)  # 5.0
    assert "**5.0 GPU-hours** for 3600 images" in gpu_text(r) and "8 jobs at a time" in gpu_text(r)
    _gpu_summary(tmp_path / "gpu.json", status="timed out after 330 s")
    r = add_gpu_projection(result(), tmp_path / "gpu.json")
    assert r["gpu"]["projected_wall_hours"] is None and "did not pass" in gpu_text(r)


def test_gpu_check_arguments(monkeypatch):
    import tools.gpu_check as gpu_check

    with pytest.raises(SystemExit):
        gpu_check.main(["--gpu-jobs", "0"])
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: None)
    assert gpu_check.scheduler_args() == ["--scheduler", "greedy"]
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: object())
    assert gpu_check.scheduler_args() == []


def test_fp32_on_cuda_is_ieee_fp32():
    import torch

    from lib.precision import strict_fp32_on_cuda

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        strict_fp32_on_cuda()
        assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
