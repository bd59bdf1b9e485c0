"""Pipeline checks: `snakemake --lint` is clean and every profile's dry run plans the expected jobs.

Snakemake runs as a subprocess from the environment that runs the tests (the bin dir next to
``sys.executable``), in the repository root. Dry runs use ``--forceall`` so they list every job
even when the pipeline has already been run, and ``--nolock`` so they never interfere with a
real run in progress. Nothing here executes a job, needs data, weights, a GPU or the internet.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lib.config import data_dir
from lib.outputs import declared

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = BIN / "snakemake"
NOTEBOOK_01 = "notebooks/01_attention_map_gradcam.ipynb"
NB01_OUTPUTS = declared("01")  # config/outputs.yaml, as the Snakefile reads it
NOTEBOOK_02 = "notebooks/02_l_cam.ipynb"
NB02_OUTPUTS = declared("02")  # config/outputs.yaml, as the Snakefile reads it
NOTEBOOK_03 = "notebooks/03_sa_cam.ipynb"
NB03_OUTPUTS = declared("03")  # config/outputs.yaml, as the Snakefile reads it
NOTEBOOK_04 = "notebooks/04_ucag.ipynb"
NB04_OUTPUTS = declared("04")  # config/outputs.yaml, as the Snakefile reads it
NOTEBOOK_05 = "notebooks/05_fm_g_cam.ipynb"
NB05_OUTPUTS = declared("05")  # config/outputs.yaml, as the Snakefile reads it
SEEDS = (0, 1, 2)  # config/config.yaml train_seeds of notebooks 01 and 02
LCAM_RUNS = {(v, loss, seed) for v in ("fm", "img") for loss in ("full", "ce") for seed in SEEDS}
AM_RUNS = {(objective, seed) for objective in ("masked-image", "feature-ce") for seed in SEEDS}
NOTEBOOK_JOBS = {"am_features": 1, "train_am_gradcam": len(AM_RUNS), "notebook_01": 1, "notebook_02": 1, "notebook_03": 1,
                 "notebook_04": 1, "notebook_05": 1, "claims_scorecard": 1, "stats_calibration": 1, "all": 1}
# L-CAM-Fm on the feature cache (one lcam_features job, then train_lcam_features), L-CAM-Img on images (train_lcam);
# the paper profile trains both on images
DEFAULT_LCAM_JOBS = {"lcam_features": 1, "train_lcam_features": 6, "train_lcam": 6}
PAPER_LCAM_JOBS = {"train_lcam": 12}
NB01_KEYS = ("gradcam", "gradcam++", "smoothgradcam++", "xgradcam", "amgradcam", "amgradcam-free", "amgradcam-s1",
             "amgradcam-s2", "amgradcam-fce", "amgradcam-fce-s1", "amgradcam-fce-s2")
LCAM_KEYS = ("lcam-start", *(f"lcam-{v}{loss}{s}" for v in ("fm", "img") for loss in ("", "-ce") for s in ("", "-s1", "-s2")))
# notebook 01 reads 11 keys' ad_ic rows, notebook 02 two of them and 13 L-CAM keys: 128 images on a CPU = 1 shard
# of 128; 2000 (paper, both notebooks) = 16 shards. Notebook 02's Score-CAM and RISE: a head of its 8 slow images
# on a CPU (fewer than a shard), 16 shards in the paper profile (2000 images).
# Notebook 04 reads its 8 UCAG variants' label rows (localisation and causal, 4 of them density) on its first 12
# images and the 6 plain and UCAG maps' causal rows on the second backbone's first 3: heads of its own priority.
UCAG_PARTS = 8 + 8 + 4 + 6
# Notebook 03 reads Grad-CAM's, Score-CAM's and SA-CAM's causal_curves rows at its layer on its 5 x 3 images, SA-CAM
# at the point of the select_sacam rule.
SACAM_PARTS = 3
EXPECTED_JOBS = {**NOTEBOOK_JOBS, **DEFAULT_LCAM_JOBS, "evaluate": (len(NB01_KEYS) + len(LCAM_KEYS)) * 1,
                 "evaluate_head": 2, "evaluate_sacam_head": SACAM_PARTS, "evaluate_notebook_head": UCAG_PARTS,
                 "select_sacam": 1}
PAPER_JOBS = {**NOTEBOOK_JOBS, **PAPER_LCAM_JOBS,
              "evaluate": (len(NB01_KEYS) + len(LCAM_KEYS) + 2 + UCAG_PARTS + SACAM_PARTS) * 16, "select_sacam": 1}
FULL_METHODS = 21  # config/config.yaml evaluation.methods (16, and the five L-CAM keys)
FULL_SHARDS = 11  # 1300 images in shards of 128


def run_snakemake(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if not SNAKEMAKE.exists():
        pytest.fail(f"snakemake not found at {SNAKEMAKE}. Fix: `make install` (pip install -e '.[test]').")
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.pop("CAM_DATA_DIR", None)
    full_env.update(env or {})
    return subprocess.run(
        [str(SNAKEMAKE), *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def dry_run(*args: str, env: dict[str, str] | None = None) -> str:
    proc = run_snakemake("--dry-run", "--forceall", "--nolock", "--rerun-incomplete", "--printshellcmds", "--cores", "1",
                         *args, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"dry run failed ({proc.returncode}):\n{out}"
    return out


def test_dag_needs_no_extra_flags():
    # profiles/default (Snakemake's workflow profile) sets cores, so `snakemake --dag` works as typed
    proc = run_snakemake("--dag", "--nolock")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.lstrip().startswith("digraph") and "notebook_03" in proc.stdout


def job_counts(out: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: {rule: count}."""
    table = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.MULTILINE)
    return {name: int(n) for name, n in rows if name != "total"}


def shell_commands(out: str) -> list[str]:
    return re.findall(r"^Shell command: (.+)$", out, flags=re.MULTILINE) or [
        line.strip() for line in out.splitlines() if "python -m lib." in line or "papermill " in line
    ]


def command_of(out: str, needle: str) -> list[str]:
    cmds = [c for c in shell_commands(out) if needle in c]
    assert len(cmds) == 1, f"expected one command containing {needle!r}, got {cmds}\n{out}"
    return shlex.split(cmds[0].split(" > ")[0])


def papermill_args(argv: list[str]) -> dict:
    """{name: value} of the -p / -r arguments (text) and -y arguments (YAML: lists) of a papermill command line."""
    params = {}
    for i, tok in enumerate(argv):
        if tok in ("-p", "-r"):
            params[argv[i + 1]] = argv[i + 2]
        elif tok == "-y":
            params.update(yaml.safe_load(argv[i + 1]))
    return params


def notebook_parameters(path: str) -> set[str]:
    """Names assigned in the cell tagged `parameters` of a notebook."""
    nb = json.loads((REPO / path).read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            return {
                target.id
                for node in ast.parse(source).body
                if isinstance(node, (ast.Assign, ast.AnnAssign))
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(target, ast.Name)
            }
    raise AssertionError(f"{path} has no cell tagged 'parameters'")


@pytest.mark.parametrize("profile", [(), ("--configfile", "config/paper.yaml")], ids=["default", "paper"])
def test_lint_is_clean(profile):
    proc = run_snakemake("--lint", *profile)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake --lint exited {proc.returncode}:\n{out}"
    assert "Lints for" not in out, out
    assert "good condition" in out, out


def test_default_profile_dry_run():
    out = dry_run()
    assert job_counts(out) == EXPECTED_JOBS, out
    for name in NB01_OUTPUTS:
        assert f"figures/01/{name}" in out, f"missing output figures/01/{name}\n{out}"
    assert "results/notebooks/01_attention_map_gradcam.ipynb" in out

    runs = am_training_commands(out)
    assert set(runs) == AM_RUNS, sorted(runs)
    for (objective, seed), argv in runs.items():
        assert argv[argv.index("--out") + 1] == f"results/checkpoints/am_gradcam_efficientnet_lite0_{objective}_s{seed}.pt"
    train = runs[("masked-image", 0)]
    assert train[train.index("--model") + 1] == "efficientnet_lite0"
    assert train[train.index("--train-dir") + 1] == "imagenet-train-1000"
    # data_dir "" -> ../shared/data beside the checkout when it exists (else local-data/), made absolute
    assert train[train.index("--data-dir") + 1] == str(data_dir().resolve())

    params = papermill_args(command_of(out, "01_attention_map_gradcam.ipynb"))
    assert params["model_name"] == "efficientnet_lite0"
    assert params["device"] == "auto"
    assert params["val_dir"] == "imagenet-val-1300"
    assert params["n_images_cpu"] == "128" and params["n_images_gpu"] == "1300"
    assert Path(params["output_dir"]) == REPO / "figures" / "01"
    assert Path(params["checkpoint_dir"]) == REPO / "results/checkpoints" and params["train_seeds"] == list(SEEDS)


def am_training_commands(out: str) -> dict[tuple[str, int], list[str]]:
    """{(objective, seed): argv} of the train_am_gradcam jobs of a dry run."""
    runs = {}
    for cmd in shell_commands(out):
        if "lib.train_am_gradcam" in cmd and "--precompute-only" not in cmd:  # not the shared pass (am_features)
            argv = shlex.split(cmd.split(" > ")[0])
            runs[(argv[argv.index("--objective") + 1], int(argv[argv.index("--seed") + 1]))] = argv
            assert argv[argv.index("--features-cache") + 1] == argv[argv.index("--out") + 1].split("checkpoints/")[0] \
                + f"cache/am_features_{argv[argv.index('--model') + 1]}.pt"
    return runs


def lcam_training_commands(out: str) -> dict[tuple[str, str, int], list[str]]:
    """{(variant, loss, seed): argv} of the L-CAM training jobs of a dry run (lib.train_lcam on images, and
    lib.lcam_features train for L-CAM-Fm on the feature cache)."""
    runs = {}
    for cmd in shell_commands(out):
        if "lib.train_lcam" in cmd or "lib.lcam_features train" in cmd:
            argv = shlex.split(cmd.split(" > ")[0])
            variant = argv[argv.index("--variant") + 1] if "--variant" in argv else "fm"
            runs[(variant, "ce" if "--ce-only" in argv else "full", int(argv[argv.index("--seed") + 1]))] = argv
    return runs


def test_default_profile_trains_four_lcams_for_notebook_02():
    out = dry_run()
    for name in NB02_OUTPUTS:
        assert f"figures/02/{name}" in out, f"missing output figures/02/{name}\n{out}"
    runs = lcam_training_commands(out)
    assert set(runs) == LCAM_RUNS, sorted(runs)
    for (variant, loss, seed), argv in runs.items():
        assert argv[argv.index("--out") + 1] == f"results/checkpoints/lcam_efficientnet_lite0_{variant}_{loss}_s{seed}.pt"
        assert argv[argv.index("--batch-size") + 1] == "64"  # the paper's batch
        if variant == "img":
            assert argv[argv.index("--train-dir") + 1] == "imagenet-train-1000"
        else:  # the cache of the training sample's views
            assert "results/cache/lcam_features_efficientnet_lite0/meta.json" in argv[argv.index("--cache") + 1]
    cache = command_of(out, "lib.lcam_features cache")
    assert cache[cache.index("--train-dir") + 1] == "imagenet-train-1000" and cache[cache.index("--views") + 1] == "4"
    params = papermill_args(command_of(out, "02_l_cam.ipynb"))
    assert params["model_name"] == "efficientnet_lite0"
    assert Path(params["checkpoint_dir"]) == REPO / "results/checkpoints"
    assert Path(params["output_dir"]) == REPO / "figures" / "02"
    assert params["rise_masks"] == "4000"  # the paper's N for VGG-16
    # the notebook's in-place training settings equal the rules' (used only without checkpoints)
    img, fm = runs[("img", "full", 0)], runs[("fm", "full", 0)]
    assert params["train_epochs"] == img[img.index("--epochs") + 1] and params["train_lr"] == img[img.index("--lr") + 1]
    assert params["fm_lr"] == fm[fm.index("--lr") + 1] and params["fm_patience"] == fm[fm.index("--patience") + 1]
    assert params["train_seeds"] == list(SEEDS)


def test_default_profile_runs_notebook_03_with_its_grid_on_the_training_sample():
    out = dry_run()
    for name in NB03_OUTPUTS:
        assert f"figures/03/{name}" in out, f"missing output figures/03/{name}\n{out}"
    params = papermill_args(command_of(out, "03_sa_cam.ipynb"))
    assert params["model_name"] == "efficientnet_lite0" and params["second_model"] == "efficientnet_lite2"
    assert params["train_dir"] == "imagenet-train-1000" and params["val_dir"] == "imagenet-val-1300"
    assert 5 * int(params["n_per_group_gpu"]) <= 1300  # five disjoint groups of the sample
    assert len(params["core_fractions"].split(",")) == 3  # Cases 1-3
    assert Path(params["cache_dir"]) == REPO / "results/cache/maps"
    assert params["target_layer_cpu"] == "last-block" and params["target_layer_gpu"] == "default"
    assert Path(params["output_dir"]) == REPO / "figures" / "03"
    # the grid: rule select_sacam at the CPU layer on the notebook's training images; the notebook reads it
    grid = "results/selection/efficientnet_lite0/sacam_last-block.csv"
    assert Path(params["selection_grid"]) == REPO / grid
    (select,) = [shlex.split(c.split(" > ")[0]) for c in shell_commands(out) if "lib.experiments.sacam" in c]
    assert select[select.index("--n-select") + 1] == params["n_select_cpu"]
    assert select[select.index("--lambdas") + 1] == params["lambdas"] and select[select.index("--layer") + 1] == "last-block"


def test_notebook_03_reads_its_tables_from_rows_at_its_layer_and_chosen_point():
    """Tables 1-3 and Fig. 9 are the causal_curves rows of the label for Grad-CAM, Score-CAM and SA-CAM at notebook
    03's CPU layer on its 5 x 3 images (one head); SA-CAM's job waits for the selection grid and gets its path."""
    out = dry_run()
    (block,) = job_blocks(out, "notebook_03")
    inputs = set(re.search(r"input: (.+)", block).group(1).split(", "))
    keys = ["gradcam-sacam-layer", "scorecam-sacam-layer", "sacam-selected"]
    rows = {f"results/eval/efficientnet_lite0/{k}/label/causal_curves/head-0015.parquet" for k in keys}
    grid = "results/selection/efficientnet_lite0/sacam_last-block.csv"
    assert {i for i in inputs if i.startswith("results/")} == rows | {grid}
    commands = {k: next(shlex.split(c.split(" > ")[0]) for c in shell_commands(out) if f"--method {k} " in c) for k in keys}
    settings = {k: json.loads(argv[argv.index("--settings") + 1]) for k, argv in commands.items()}
    assert all(s["target_layer"] == "last-block" for s in settings.values())
    assert settings["sacam-selected"]["selection"] == str(REPO / grid)
    (sacam_job,) = [b for b in job_blocks(out, "evaluate_sacam_head") if "method=sacam-selected" in b]
    assert grid in sacam_job
    # the chain select_sacam -> SA-CAM's head -> notebook 03 starts right after notebook 02's slow heads
    assert "priority: 25" in sacam_job and all("priority: 25" in b for b in job_blocks(out, "select_sacam"))


def test_default_profile_runs_notebook_04_on_both_lite_models():
    out = dry_run()
    for name in NB04_OUTPUTS:
        assert f"figures/04/{name}" in out, f"missing output figures/04/{name}\n{out}"
    params = papermill_args(command_of(out, "04_ucag.ipynb"))
    assert params["model_name"] == "efficientnet_lite0" and params["second_model"] == "efficientnet_lite2"
    assert int(params["n_causal_cpu"]) <= int(params["n_pointing_cpu"])  # the causal images are the first drawn
    assert int(params["n_causal_gpu"]) <= int(params["n_pointing_gpu"]) <= 1300
    assert params["scales"].split(",")[0] == "224" and params["scales"].split(",")[-1] == "924"  # Fig. 2's range
    assert Path(params["cache_dir"]) == REPO / "results/cache/maps"
    assert Path(params["output_dir"]) == REPO / "figures" / "04"
    assert Path(params["eval_dir"]) == REPO / "results/eval" and params["shard_size"] == "128"


def test_notebook_04_reads_its_ucag_rows_from_heads():
    """Notebook 04's generic metrics are evaluation rows for the label: the 8 variants' localisation and causal
    rows (4 of them density) on its first 12 images, the 6 plain and UCAG maps' causal rows on Lite2's first 3;
    heads (fewer images than a shard) at notebook 04's priority, not the slow heads' of notebook 02; the causal
    job makes a part's maps and the other groups wait for it (no ad_ic job); UCAG's settings reach the job."""
    out = dry_run()
    (block,) = job_blocks(out, "notebook_04")
    rows = {i for i in re.search(r"input: (.+)", block).group(1).split(", ") if i.startswith("results/eval/")}
    variants = ["gradcam", "gradcam++", "layercam", "ucag-gradcam", "ucag-gradcam++", "ucag-layercam",
                "ucag-gradcam-count1", "ucag-scaling"]
    lite0 = "results/eval/efficientnet_lite0/{}/label/{}/head-0012.parquet"
    expected = ({lite0.format(m, g) for m in variants for g in ("localisation", "causal")}
                | {lite0.format(m, "density") for m in ("gradcam", "ucag-gradcam", "ucag-gradcam-count1", "ucag-scaling")}
                | {f"results/eval/efficientnet_lite2/{m}/label/causal/head-0003.parquet" for m in variants[:6]})
    assert rows == expected
    jobs = job_blocks(out, "evaluate_notebook_head")
    assert len(jobs) == len(expected) and all("priority: 3" in b for b in jobs)  # notebook 04's: fill the gaps
    assert all("priority: 30" in b for b in job_blocks(out, "evaluate_head"))
    (loc,) = [b for b in jobs if "method=ucag-scaling, target=label, group=localisation" in b]
    assert "results/eval/efficientnet_lite0/ucag-scaling/label/causal/head-0012.parquet" in loc
    assert "/ad_ic/" not in loc
    (causal,) = [b for b in jobs if "model=efficientnet_lite0, method=ucag-scaling, target=label, group=causal" in b]
    assert "/density/" not in re.search(r"input: (.+)", causal).group(1)
    argv = next(shlex.split(c.split(" > ")[0]) for c in shell_commands(out)
                if "--method ucag-scaling" in c and "--group causal" in c)
    assert json.loads(argv[argv.index("--settings") + 1]) == {"method": "ucag-gradcam", "n": 1, "rho": 1.0}
    assert json.loads(argv[argv.index("--companions") + 1]) == {}  # its own crops (n = 1): its own maps
    # UCAG's variants of one crop geometry: ucag-gradcam's causal job makes every one's maps in one set of crop
    # passes (--companions), and each of their jobs waits for it instead of computing them again
    for model, head, family in (("efficientnet_lite0", "head-0012", ["ucag-gradcam++", "ucag-layercam", "ucag-gradcam-count1"]),
                                ("efficientnet_lite2", "head-0003", ["ucag-gradcam++", "ucag-layercam"])):
        argv = next(shlex.split(c.split(" > ")[0]) for c in shell_commands(out)
                    if f"--model {model} --method ucag-gradcam " in c and "--group causal" in c)
        assert set(json.loads(argv[argv.index("--companions") + 1])) == set(family)
        leader = f"results/eval/{model}/ucag-gradcam/label/causal/{head}.parquet"
        for member in family:
            member_jobs = [b for b in jobs if f"model={model}, method={member}, target=label" in b]
            assert member_jobs and all(leader in re.search(r"input: (.+)", b).group(1) for b in member_jobs)
    plain = [c for c in shell_commands(out) if "--method gradcam++ " in c and "--target label" in c]
    assert plain and all("--companions '{}'" in c for c in plain)


def test_default_profile_runs_notebook_05():
    out = dry_run()
    for name in NB05_OUTPUTS:
        assert f"figures/05/{name}" in out, f"missing output figures/05/{name}\n{out}"
    params = papermill_args(command_of(out, "05_fm_g_cam.ipynb"))
    assert params["model_name"] == "efficientnet_lite0" and params["k"] == "3"
    assert 1 <= int(params["k"]) <= int(params["max_k"])
    sample = 1300  # the choice of K, the figures' and the composites' draws are disjoint parts of the sample
    for dev in ("cpu", "gpu"):
        used = int(params["n_figure_val"]) + int(params[f"n_choose_k_{dev}"]) + 2 * int(params[f"n_composites_{dev}"])
        assert used <= sample, f"{dev}: {used} images drawn from a sample of {sample}"
    assert Path(params["output_dir"]) == REPO / "figures" / "05"


@pytest.mark.parametrize("notebook", [NOTEBOOK_01, NOTEBOOK_02, NOTEBOOK_03, NOTEBOOK_04, NOTEBOOK_05])
def test_every_notebook_parameter_comes_from_config(notebook):
    """No parameter is left at the notebook's quick default in a pipeline run."""
    params = papermill_args(command_of(dry_run(), Path(notebook).name))
    expected = notebook_parameters(notebook)
    assert set(params) == expected, f"passed {sorted(params)}, notebook has {sorted(expected)}"


def test_paper_profile_dry_run():
    out = dry_run("--configfile", "config/paper.yaml")
    assert job_counts(out) == PAPER_JOBS, out
    for name in NB01_OUTPUTS:
        assert f"figures/paper/01/{name}" in out, out

    train = am_training_commands(out)[("masked-image", 0)]
    assert train[train.index("--model") + 1] == "resnet50"
    assert train[train.index("--device") + 1] == "cuda"
    assert train[train.index("--train-dir") + 1] == "train"

    params = papermill_args(command_of(out, "01_attention_map_gradcam.ipynb"))
    assert params["model_name"] == "resnet50"
    assert params["device"] == "cuda"
    assert params["val_dir"] == "val"
    assert params["n_images_cpu"] == params["n_images_gpu"] == "2000"
    # the placeholder data root is a parameter, not an input: the dry run does not need it
    assert params["data_dir"] == train[train.index("--data-dir") + 1] == "/path/to/ILSVRC2012"
    # the GPU is declared to the scheduler (Snakemake's standard `gpu` resource)
    assert re.search(r"resources:.*\bgpu=1\b", out), out

    # notebook 02: the paper's ResNet-50 half, 25 epochs over the user's train/ folder
    runs = lcam_training_commands(out)
    assert set(runs) == LCAM_RUNS, sorted(runs)
    for argv in runs.values():
        assert argv[argv.index("--model") + 1] == "resnet50"
        assert argv[argv.index("--epochs") + 1] == "25"
        assert argv[argv.index("--train-dir") + 1] == "train"
    params02 = papermill_args(command_of(out, "02_l_cam.ipynb"))
    assert params02["rise_masks"] == "8000" and params02["n_images_gpu"] == "2000"
    for name in NB02_OUTPUTS:
        assert f"figures/paper/02/{name}" in out, out

    # notebook 03: VGG-16 with its own last conv layer, the paper's 8 randomised layers
    params03 = papermill_args(command_of(out, "03_sa_cam.ipynb"))
    assert params03["model_name"] == "vgg16" and params03["target_layer_cpu"] == "default"
    assert params03["target_layer_gpu"] == "default"
    assert params03["cascade_layers"] == "8" and params03["device"] == "cuda"
    for name in NB03_OUTPUTS:
        assert f"figures/paper/03/{name}" in out, out

    # notebook 04: the paper's ResNet-50 and DenseNet-121, Fig. 2 every 100 px
    params04 = papermill_args(command_of(out, "04_ucag.ipynb"))
    assert params04["model_name"] == "resnet50" and params04["second_model"] == "densenet121"
    assert params04["scales"] == ",".join(str(s) for s in range(224, 925, 100))
    for name in NB04_OUTPUTS:
        assert f"figures/paper/04/{name}" in out, out

    # notebook 05: the paper's ResNet-50
    params05 = papermill_args(command_of(out, "05_fm_g_cam.ipynb"))
    assert params05["model_name"] == "resnet50" and params05["device"] == "cuda"
    for name in NB05_OUTPUTS:
        assert f"figures/paper/05/{name}" in out, out


def test_data_dir_from_environment_and_config(tmp_path):
    env_dir = tmp_path / "from-env"
    out = dry_run(env={"CAM_DATA_DIR": str(env_dir)})
    assert papermill_args(command_of(out, NOTEBOOK_02))["data_dir"] == str(env_dir)

    cfg_dir = tmp_path / "from-config"
    out = dry_run("--config", f"data_dir={cfg_dir}", env={"CAM_DATA_DIR": str(env_dir)})
    assert papermill_args(command_of(out, NOTEBOOK_01))["data_dir"] == str(cfg_dir)


def test_snakefile_never_deletes_finished_work():
    """Outputs are plain files: no temp(), directory() outputs or shadow rules, nothing removed."""
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    assert len(files) >= 5
    for path in files:
        code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        for pattern in (r"\btemp\(", r"\bdirectory\(", r"\bshadow\s*:", r"\brm\s+-", r"\bonerror\b",
                        r"shutil\.rmtree", r"\.unlink\("):
            assert not re.search(pattern, code), f"{path.name} uses {pattern!r}"


def job_blocks(out: str, rule: str) -> list[str]:
    """The text of every job of ``rule`` in a dry run's listing."""
    return [block for block in re.split(r"\n\s*\n", out) if re.search(rf"^\s*(localrule|rule) {rule}:", block, re.MULTILINE)]


def test_notebook_01_reads_exactly_its_evaluation_shards():
    """Notebook 01's rule takes as input the 6 methods' ad_ic shards of its first 128 images, and passes
    the folder and shard size to the notebook; each evaluate job has threads, resources, log and benchmark."""
    out = dry_run()
    (block,) = job_blocks(out, "notebook_01")
    inputs = re.search(r"input: (.+)", block).group(1).split(", ")
    shards = sorted(i for i in inputs if i.startswith("results/eval/"))
    assert shards == sorted(f"results/eval/efficientnet_lite0/{m}/predicted/ad_ic/shard-{k:04d}.parquet"
                            for m in NB01_KEYS for k in (0,))
    assert any(i.endswith("imagenet-val-1300/SHA256SUMS") for i in inputs)  # the data sample is an input
    params = papermill_args(command_of(out, "01_attention_map_gradcam.ipynb"))
    assert Path(params["eval_dir"]) == REPO / "results/eval" and params["shard_size"] == "128"
    evaluate = job_blocks(out, "evaluate")
    assert len(evaluate) == EXPECTED_JOBS["evaluate"]
    for block in evaluate:
        assert re.search(r"threads: 1\b", block) or "threads:" not in block  # one thread (benchmarks/threads.json)
        assert re.search(r"resources:.*\bmem_mb=4000\b.*", block) and re.search(r"\bruntime=60\b", block), block
        assert "log: results/logs/evaluate/" in block and "benchmark: results/benchmarks/evaluate/" in block
    blocks = {re.search(r"method=([^,]+),", b).group(1): b for b in evaluate}  # trained weights in
    assert "results/checkpoints/am_gradcam_efficientnet_lite0_masked-image_s0.pt" in blocks["amgradcam"]
    assert "results/checkpoints/am_gradcam_efficientnet_lite0_feature-ce_s2.pt" in blocks["amgradcam-fce-s2"]


def test_notebook_02_reads_the_same_grad_cam_shards_as_notebook_01():
    """Computed once: notebook 02's Grad-CAM and Grad-CAM++ rows are notebook 01's files, no new evaluate job; its
    L-CAM rows are shards of the L-CAM keys, each waiting for its checkpoint."""
    out = dry_run()
    inputs = {}
    for nb in ("01", "02"):
        (block,) = job_blocks(out, f"notebook_{nb}")
        inputs[nb] = {i for i in re.search(r"input: (.+)", block).group(1).split(", ") if i.startswith("results/eval/")}
    lcam = LCAM_KEYS
    heads = {f"results/eval/efficientnet_lite0/{m}/predicted/ad_ic/head-0008.parquet" for m in ("scorecam", "rise")}
    assert inputs["02"] == ({f"results/eval/efficientnet_lite0/{m}/predicted/ad_ic/shard-0000.parquet"
                             for m in ("gradcam", "gradcam++")} | heads
                            | {f"results/eval/efficientnet_lite0/{m}/predicted/ad_ic_lcam/shard-0000.parquet" for m in lcam})
    assert inputs["02"] & inputs["01"] == {f"results/eval/efficientnet_lite0/{m}/predicted/ad_ic/shard-0000.parquet"
                                           for m in ("gradcam", "gradcam++")}
    # an L-CAM key's shard waits for its train_lcam rule's checkpoint (the same weights the notebook loads)
    blocks = {re.search(r"method=([^,]+),", b).group(1): b for b in job_blocks(out, "evaluate")}
    assert "results/checkpoints/lcam_efficientnet_lite0_fm_full_s0.pt" in blocks["lcam-fm"]
    assert "results/checkpoints/lcam_efficientnet_lite0_img_ce_s0.pt" in blocks["lcam-img-ce"]
    assert "results/checkpoints/lcam_efficientnet_lite0_img_ce_s2.pt" in blocks["lcam-img-ce-s2"]
    assert "checkpoints/" not in re.search(r"input: (.+)", blocks["lcam-start"]).group(1)
    params = papermill_args(command_of(out, "02_l_cam.ipynb"))
    assert Path(params["eval_dir"]) == REPO / "results/eval" and params["shard_size"] == "128"
    # Score-CAM and RISE on the first n_slow_cpu (8) images: a head, not a shard of 128
    assert params["n_slow_cpu"] == "8" and params["rise_masks"] == "4000"
    heads = [shlex.split(c.split(" > ")[0]) for c in shell_commands(out)
             if "lib.evaluation" in c and "--head" in c and "--target predicted" in c]
    assert sorted(argv[argv.index("--method") + 1] for argv in heads) == ["rise", "scorecam"], heads
    for argv in heads:
        assert argv[argv.index("--head") + 1] == "8" and "--shard" not in argv, argv
        method = argv[argv.index("--method") + 1]
        assert json.loads(argv[argv.index("--settings") + 1]) == ({"n_masks": 4000} if method == "rise" else {})


@pytest.mark.parametrize("override, message", [
    ({"notebook02": {"rise_masks": 100}}, "differs from notebook 02's RISE"),
    ({"notebook01": {"val_dir": "other"}}, "notebook01.val_dir (other) differs from evaluation.val_dir"),
])
def test_notebook_settings_must_match_the_rows_they_read(tmp_path, override, message):
    """A notebook reading the evaluation rows must read them of its own folder and its own RISE settings: else it
    would recompute them (or read another folder's images), so the pipeline refuses to plan, naming the fix."""
    extra = tmp_path / "override.yaml"
    extra.write_text(yaml.safe_dump(override))
    proc = run_snakemake("--dry-run", "--nolock", "--cores", "1", "--configfile", "config/config.yaml", str(extra))
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_slurm_profile_plans_every_shard_with_a_gpu():
    """`snakemake -n --profile profiles/slurm`: the full evaluation, one evaluate job per (method, group,
    shard), each asking SLURM for a GPU, grouped eight shards per sbatch job."""
    proc = run_snakemake("-n", "--forceall", "--nolock", "--profile", "profiles/slurm")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    counts = job_counts(out)
    assert counts["evaluate"] == FULL_METHODS * 6 * FULL_SHARDS, counts  # 6 metric groups, predicted class
    assert counts["evaluation_summary"] == 1 and counts["train_am_gradcam"] == 1
    assert "notebook_01" not in counts
    evaluate = job_blocks(out, "evaluate")
    assert all(re.search(r"\bgpu=1\b", b) and re.search(r"\bmem_mb=16000\b", b) and "slurm_partition=" in b
               for b in evaluate), evaluate[:1]
    assert "Group job shards" in out
    last = FULL_SHARDS - 1
    assert re.search(rf"shard-{last:04d}\.parquet", out) and not re.search(rf"shard-{last + 1:04d}\.parquet", out)


def test_full_profile_dry_run_and_config_schema(tmp_path):
    out = dry_run("--profile", "profiles/full")
    counts = job_counts(out)
    assert counts["evaluate"] == FULL_METHODS * 6 * FULL_SHARDS and counts["evaluation_summary"] == 1
    assert re.search(r"\bgpu=0\b", out)  # the local profile: no GPU on this machine
    # a shard's other groups wait for its ad_ic job, which computes the maps into the store
    (causal,) = [b for b in job_blocks(out, "evaluate") if "method=rise, target=predicted, group=causal, shard=shard-0003" in b]
    assert "results/eval/efficientnet_lite0/rise/predicted/ad_ic/shard-0003.parquet" in causal
    bad = tmp_path / "bad.yaml"
    bad.write_text("evaluation:\n  shard_size: 0\n")
    proc = run_snakemake("-n", "--nolock", "--configfile", "config/config.yaml", str(bad))
    assert proc.returncode != 0 and "shard_size" in proc.stdout + proc.stderr


def test_report_captions_are_up_to_date():
    proc = subprocess.run([sys.executable, "-m", "tools.report_captions", "--check"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Grad-CAM:  50%|#####     | 6/12 [00:01<00:01,  4.20it/s]", "Grad-CAM:  PROGRESS"),
        ("<Classifier object at 0x7f3a2c1d0e80>", "<Classifier object at ADDRESS>"),
        ("12 images on cuda:0 in 3.2 s", "12 images on DEVICE in DURATION"),
        ("12 images on cpu in 41s", "12 images on DEVICE in DURATION"),
        ("AD 45.27, IC 23.06 (lr 1e-05)", "AD FLOAT, IC FLOAT (lr FLOAT)"),
        ("n_images_cpu = 12, 1300 images", "n_images_cpu = 12, 1300 images"),
    ],
)
def test_nbval_sanitize_patterns(text, expected):
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((REPO / "tests" / "nbval_sanitize.cfg").read_text())
    assert len(patterns) >= 5
    for regex, replace in patterns:
        assert regex == regex.strip() and replace == replace.strip(), f"stray whitespace in {regex!r} / {replace!r}"
        text = re.sub(regex, replace, text)
    assert text == expected


def test_every_file_under_figures_is_a_declared_output():
    """Every committed file under figures/ is written by a rule: a notebook's (config/outputs.yaml) or one of
    the pipeline's own (`pipeline:`), so none can go stale unseen."""
    from lib.outputs import notebooks, pipeline_outputs

    tracked = subprocess.run(["git", "ls-files", "figures"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    declared_files = {f"figures/{nb}/{name}" for nb in notebooks() for name in declared(nb)}
    declared_files |= {f"figures/{name}" for name in pipeline_outputs()}
    assert tracked and set(tracked) <= declared_files, sorted(set(tracked) - declared_files)
    out = dry_run()
    assert all(f in out for f in declared_files), sorted(f for f in declared_files if f not in out)
