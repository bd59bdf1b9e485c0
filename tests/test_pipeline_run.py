"""The pipeline really runs: evaluation shards in parallel jobs, a kill mid-run, and a resume.

A small full-profile configuration (two cheap methods, the ad_ic group, shards of two images) in a
temporary results folder: the same command after a `kill` of the whole Snakemake process group keeps
the finished shards (same files, untouched), reruns only what was interrupted or not started, and
ends with the same summary table as an uninterrupted run in another folder (its own map store, so
nothing is shared). Then `snakemake --report` of the finished run holds its tables. Minutes on two
cores; needs the validation sample and Lite0's weights (offline). The runs write only under the
temporary folder, so they take no lock (--nolock) and never block a pipeline run in this checkout; a
user whose run was killed this hard runs `snakemake --unlock` once, then the same command.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lib.config import data_dir

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
VAL = data_dir() / "imagenet-val-1300"
pytestmark = pytest.mark.skipif(not (VAL / "labels.csv").is_file(), reason="the validation sample is not installed")
METHODS = ["gradcam", "eigencam"]
N_IMAGES, SHARD = 6, 2
SHARDS = N_IMAGES // SHARD * len(METHODS)


def config_file(tmp: Path, name: str) -> Path:
    cfg = {"results_dir": str(tmp / name / "results"), "figures_dir": str(tmp / name / "figures"),
           "device": "cpu",
           "evaluation": {"full": True, "n_images": N_IMAGES, "shard_size": SHARD, "groups": ["ad_ic"],
                          "targets": ["predicted"], "full_methods": METHODS}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake(cfg: Path, log: Path) -> subprocess.Popen:
    """The pipeline on ``cfg`` in its own process group, its output in ``log``."""
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "w") as out:
        return subprocess.Popen([str(SNAKEMAKE), "--cores", "2", "--configfile", "config/config.yaml", str(cfg),
                                 "--rerun-incomplete", "--nolock"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 900) -> str:
    proc.wait(timeout=timeout)
    out = log.read_text()
    assert proc.returncode == 0, out
    return out


def finished_shards(log_text: str) -> set[str]:
    """The shard files of the evaluate jobs Snakemake reported finished in a log."""
    outputs = dict(re.findall(r"rule evaluate:\n(?:.*\n)*?\s+output: (\S+)\n(?:.*\n)*?\s+jobid: (\d+)", log_text))
    jobs = {v: k for k, v in outputs.items()}
    return {jobs[j] for j in re.findall(r"Finished jobid: (\d+)", log_text) if j in jobs}


def shards(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted((root / "results" / "eval").rglob("shard-*.parquet"))}


def test_kill_and_resume_reproduces_an_uninterrupted_run(tmp_path):
    reference_cfg = config_file(tmp_path, "reference")
    finish(snakemake(reference_cfg, tmp_path / "reference.log"), tmp_path / "reference.log")
    assert len(shards(tmp_path / "reference")) == SHARDS

    cfg, log = config_file(tmp_path, "killed"), tmp_path / "killed.log"
    proc = snakemake(cfg, log)
    deadline = time.time() + 600
    while len(finished_shards(log.read_text())) < 2 and time.time() < deadline:  # two shards done, others running
        time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: Snakemake and its running jobs
    proc.wait()
    done = finished_shards(log.read_text())
    kept = shards(tmp_path / "killed")
    assert 2 <= len(done) and {Path(p) for p in done} <= set(kept) and len(kept) < SHARDS, (done, kept)

    out = finish(snakemake(cfg, log), log)
    after = shards(tmp_path / "killed")
    assert len(after) == SHARDS
    assert all(after[Path(p)] == kept[Path(p)] for p in done), "a finished shard was recomputed"
    # the shards Snakemake had not reported finished (running at the kill, or not started) run again
    assert out.count("rule evaluate:") == SHARDS - len(done), out

    ours = pd.read_csv(tmp_path / "killed" / "figures" / "evaluation_summary.csv")
    reference = pd.read_csv(tmp_path / "reference" / "figures" / "evaluation_summary.csv")
    pd.testing.assert_frame_equal(ours, reference)
    assert set(ours.method) == set(METHODS) and (ours.n == N_IMAGES).all()

    report = tmp_path / "report.zip"
    proc = subprocess.run([str(SNAKEMAKE), "--configfile", "config/config.yaml", str(cfg), "--nolock", "--report",
                           str(report)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = zipfile.ZipFile(report).namelist()
    assert any(n.endswith("evaluation_summary.csv") for n in names), names
    assert any(n.endswith("evaluation_cost.csv") for n in names), names
