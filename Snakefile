# The compendium's pipeline: one rule per notebook, run with papermill, parameters from config/.
#
#   snakemake --cores all                                  default profile (config/config.yaml)
#   snakemake --cores all --configfile config/paper.yaml   paper profile
#   snakemake -n                                           what would run, and why
#
# Every notebook rule has the same shape (see notebook_01): the notebook (and anything it needs,
# e.g. a trained checkpoint) as input; its figures and tables under {figures_dir}/NN/ and the
# executed notebook under {results_dir}/notebooks/ as output; all parameters from its config
# section through papermill_params(). To add a notebook, add a `notebookNN:` section to the
# config files, a rule `notebook_NN` like notebook_01, and its outputs to NOTEBOOK_OUTPUTS.
#
# Interrupted runs lose nothing that was finished: outputs are only the files a rule writes
# (never a whole folder), nothing is temp() or shadowed, and caches/partial checkpoints are not
# outputs, so Snakemake never deletes them; the trainer resumes from <checkpoint>.partial.

import glob
import os
import shlex
import sys
from pathlib import Path


configfile: "config/config.yaml"


# Jobs call `python` and `papermill` from the environment Snakemake itself runs in (the .venv
# of `make pipeline`), also when that environment is not activated.
os.environ.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))

REPO = Path(workflow.basedir)
sys.path.insert(0, str(REPO))  # lib from this checkout, also when snakemake runs outside .venv
from lib.config import data_dir  # noqa: E402
from lib.outputs import declared  # noqa: E402
RESULTS = config["results_dir"]
FIGURES = config["figures_dir"]
DEVICE = str(config["device"])
# One map store for every notebook (lib.analysis.map_store): a map of the same model, method, settings,
# layer, image and target is computed once, whichever notebook asks first.
MAP_STORE = f"{RESULTS}/cache/maps"


def data_root():
    """config data_dir, else $CAM_DATA_DIR, else ../shared/data when it exists, else local-data/
    (lib.config.data_dir; `make data` builds the samples there); relative to the repo root."""
    return str(data_dir(str(config.get("data_dir") or "")).resolve())


def papermill_params(params):
    """papermill arguments for a dict of notebook parameters: strings raw (-r), numbers typed (-p)."""
    args = []
    for name, value in params.items():
        if isinstance(value, (bool, int, float)):
            args += ["-p", name, str(value)]
        else:
            args += ["-r", name, str(value)]
    return shlex.join(args)


def gpus():
    """GPUs a job asks for (Snakemake's standard `gpu` resource): 1 when the device is cuda."""
    return 1 if DEVICE.startswith("cuda") else 0


def lib_sources():
    """The library's Python files: notebooks depend on them, so a library change reruns them."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "lib").rglob("*.py"))


def checkpoint_path(model):
    return f"{RESULTS}/checkpoints/am_gradcam_{model}.pt"


# With --use-conda, jobs run in the environment of config/envs/compendium.yml (the dependencies
# of pyproject.toml; `lib` comes from the checkout through PYTHONPATH); `make pipeline` uses .venv
# and ignores this. A file, not a named environment: Snakemake would call `conda` to export a
# named one even without --use-conda, and fail where conda is not installed.
CONDA_ENV = "config/envs/compendium.yml"

NB01 = config["notebook01"]
NB01_FIGURES = f"{FIGURES}/01"
NB01_TABLES = declared("01", "tables")  # config/outputs.yaml
NB01_FIGS = declared("01", "figures")

NB02 = config["notebook02"]
NB02_FIGURES = f"{FIGURES}/02"
NB02_TABLES = declared("02", "tables")  # config/outputs.yaml
NB02_FIGS = declared("02", "figures")
LCAM_VARIANTS = [f"{variant}_{loss}" for variant in ("fm", "img") for loss in ("full", "ce")]


NB03 = config["notebook03"]
NB03_FIGURES = f"{FIGURES}/03"
NB03_TABLES = declared("03", "tables")  # config/outputs.yaml
NB03_FIGS = declared("03", "figures")


NB04 = config["notebook04"]
NB04_FIGURES = f"{FIGURES}/04"
NB04_TABLES = declared("04", "tables")  # config/outputs.yaml
NB04_FIGS = declared("04", "figures")


NB05 = config["notebook05"]
NB05_FIGURES = f"{FIGURES}/05"
NB05_TABLES = declared("05", "tables")  # config/outputs.yaml
NB05_FIGS = declared("05", "figures")


def lcam_checkpoints(model):
    """The four L-CAM checkpoints of notebook 02: L-CAM-Fm, L-CAM-Img and their CE-only ablations."""
    return [f"{RESULTS}/checkpoints/lcam_{model}_{v}.pt" for v in LCAM_VARIANTS]


NOTEBOOK_OUTPUTS = (
    [f"{NB01_FIGURES}/{name}" for name in NB01_TABLES + NB01_FIGS]
    + [f"{RESULTS}/notebooks/01_attention_map_gradcam.ipynb"]
    + [f"{NB02_FIGURES}/{name}" for name in NB02_TABLES + NB02_FIGS]
    + [f"{RESULTS}/notebooks/02_l_cam.ipynb"]
    + [f"{NB03_FIGURES}/{name}" for name in NB03_TABLES + NB03_FIGS]
    + [f"{RESULTS}/notebooks/03_sa_cam.ipynb"]
    + [f"{NB04_FIGURES}/{name}" for name in NB04_TABLES + NB04_FIGS]
    + [f"{RESULTS}/notebooks/04_ucag.ipynb"]
    + [f"{NB05_FIGURES}/{name}" for name in NB05_TABLES + NB05_FIGS]
    + [f"{RESULTS}/notebooks/05_fm_g_cam.ipynb"]
)


wildcard_constraints:
    model=r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*?",
    variant=r"img|fm",
    loss=r"full|ce",


rule all:
    """Every figure and table of every notebook, and the claims scorecard."""
    input:
        NOTEBOOK_OUTPUTS,
        f"{FIGURES}/claims_scorecard.csv",
    default_target: True


rule claims_scorecard:
    """Verdicts on every claim of the registry (lib/analysis/claims) from the notebooks' per-image tables."""
    input:
        NOTEBOOK_OUTPUTS,
        registry=sorted(glob.glob("lib/analysis/claims/*.yaml")),
        code=["tools/claims_scorecard.py", "lib/analysis/evidence.py", "lib/analysis/verdicts.py",
              "lib/analysis/stats.py", "lib/analysis/claims.py"],
    output:
        f"{FIGURES}/claims_scorecard.csv",
    log:
        f"{RESULTS}/logs/claims_scorecard.log",
    params:
        repo=str(REPO),
        figures=os.path.abspath(FIGURES),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q} python -m tools.claims_scorecard --csv-only --figures {params.figures:q} > {log:q} 2>&1"


rule train_am_gradcam:
    """Train AM-Grad-CAM's channel/spatial attention on the frozen classifier (paper 01)."""
    input:
        code=["lib/train_am_gradcam.py", "lib/cams/attention.py"],
    output:
        checkpoint=f"{RESULTS}/checkpoints/am_gradcam_{{model}}.pt",
    log:
        f"{RESULTS}/logs/train_am_gradcam_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_am_gradcam_{{model}}.tsv"
    params:
        repo=str(REPO),  # on PYTHONPATH: jobs import lib from this checkout (also under --use-conda)
        data_dir=data_root(),
        train_dir=NB01["train_dir"],
        epochs=NB01["train_epochs"],
        images=NB01["train_images"],
        batch_size=NB01["train_batch_size"],
        seed=NB01["seed"],
        device=DEVICE,
    threads: workflow.cores
    resources:
        gpu=gpus(),
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q} OMP_NUM_THREADS={threads} python -m lib.train_am_gradcam"
        " --model {wildcards.model:q} --data-dir {params.data_dir:q} --train-dir {params.train_dir:q}"
        " --epochs {params.epochs} --images {params.images} --batch-size {params.batch_size}"
        " --seed {params.seed} --device {params.device:q} --out {output.checkpoint:q}"
        " > {log:q} 2>&1"


rule notebook_01:
    """Notebook 01, attention-map-guided Grad-CAM: Table 3 (AD/IC), Table 4 (percentage in), Fig. 7."""
    input:
        notebook="notebooks/01_attention_map_gradcam.ipynb",
        checkpoint=checkpoint_path(NB01["model"]),
        lib=lib_sources(),
    output:
        tables=[f"{NB01_FIGURES}/{name}" for name in NB01_TABLES],
        figures=[f"{NB01_FIGURES}/{name}" for name in NB01_FIGS],
        notebook=f"{RESULTS}/notebooks/01_attention_map_gradcam.ipynb",
    log:
        f"{RESULTS}/logs/notebook_01.log",
    benchmark:
        f"{RESULTS}/benchmarks/notebook_01.tsv"
    params:
        repo=str(REPO),
        # papermill runs the notebook in notebooks/ (as Jupyter and nbval do); paths are absolute.
        cwd=lambda wildcards, input: os.path.dirname(input.notebook),
        papermill=lambda wildcards, input, output: papermill_params(
            {
                "model_name": NB01["model"],
                "data_dir": data_root(),
                "val_dir": NB01["val_dir"],
                "train_dir": NB01["train_dir"],
                "n_images_cpu": NB01["n_images_cpu"],
                "n_images_gpu": NB01["n_images_gpu"],
                "seed": NB01["seed"],
                "device": DEVICE,
                "batch_size": NB01["batch_size"],
                "checkpoint": os.path.abspath(input.checkpoint),
                "train_epochs": NB01["train_epochs"],
                "train_images": NB01["train_images"],
                # no map store for notebook 01: its SmoothGrad-CAM++ draws noise per batch (README, Interrupted runs)
                "cache_dir": "",
                "output_dir": os.path.abspath(os.path.dirname(output.tables[0])),
            }
        ),
    threads: workflow.cores
    resources:
        gpu=gpus(),
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q} OMP_NUM_THREADS={threads} papermill {input.notebook:q} {output.notebook:q}"
        " --cwd {params.cwd:q} --kernel python3 --log-output --no-progress-bar"
        " {params.papermill} > {log:q} 2>&1"


rule train_lcam:
    """Train one L-CAM attention on the frozen classifier (paper 02): variant img|fm, loss full|ce."""
    input:
        code=["lib/train_lcam.py", "lib/cams/lcam.py"],
    output:
        checkpoint=f"{RESULTS}/checkpoints/lcam_{{model}}_{{variant}}_{{loss}}.pt",
    log:
        f"{RESULTS}/logs/train_lcam_{{model}}_{{variant}}_{{loss}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_lcam_{{model}}_{{variant}}_{{loss}}.tsv"
    params:
        repo=str(REPO),
        data_dir=data_root(),
        train_dir=NB02["train_dir"],
        epochs=NB02["train_epochs"],
        images=NB02["train_images"],
        batch_size=NB02["train_batch_size"],
        lr_decay=NB02["train_lr_decay"],
        seed=NB02["seed"],
        device=DEVICE,
        ce_only=lambda wildcards: "--ce-only" if wildcards.loss == "ce" else "",
    threads: workflow.cores
    resources:
        gpu=gpus(),
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q} OMP_NUM_THREADS={threads} python -m lib.train_lcam"
        " --model {wildcards.model:q} --variant {wildcards.variant} {params.ce_only}"
        " --data-dir {params.data_dir:q} --train-dir {params.train_dir:q}"
        " --epochs {params.epochs} --images {params.images} --batch-size {params.batch_size}"
        " --lr-decay {params.lr_decay} --seed {params.seed} --device {params.device:q}"
        " --out {output.checkpoint:q} > {log:q} 2>&1"


rule notebook_02:
    """Notebook 02, L-CAM: Table 1 (AD/IC, #FW), Figs 3-4 (maps, class-specific maps scored), Figs 5-9 (errors)."""
    input:
        notebook="notebooks/02_l_cam.ipynb",
        checkpoints=lcam_checkpoints(NB02["model"]),
        lib=lib_sources(),
    output:
        tables=[f"{NB02_FIGURES}/{name}" for name in NB02_TABLES],
        figures=[f"{NB02_FIGURES}/{name}" for name in NB02_FIGS],
        notebook=f"{RESULTS}/notebooks/02_l_cam.ipynb",
    log:
        f"{RESULTS}/logs/notebook_02.log",
    benchmark:
        f"{RESULTS}/benchmarks/notebook_02.tsv"
    params:
        repo=str(REPO),
        cwd=lambda wildcards, input: os.path.dirname(input.notebook),
        papermill=lambda wildcards, input, output: papermill_params(
            {
                "model_name": NB02["model"],
                "data_dir": data_root(),
                "val_dir": NB02["val_dir"],
                "train_dir": NB02["train_dir"],
                "n_images_cpu": NB02["n_images_cpu"],
                "n_images_gpu": NB02["n_images_gpu"],
                "n_slow_cpu": NB02["n_slow_cpu"],
                "n_slow_gpu": NB02["n_slow_gpu"],
                "rise_masks": NB02["rise_masks"],
                "n_errors": NB02["n_errors"],
                "n_error_pool": NB02["n_error_pool"],
                "seed": NB02["seed"],
                "device": DEVICE,
                "batch_size": NB02["batch_size"],
                "checkpoint_dir": os.path.abspath(os.path.dirname(input.checkpoints[0])),
                # used by the notebook only when it trains itself (no checkpoint_dir): kept equal to the rule's
                "train_epochs": NB02["train_epochs"],
                "train_images": NB02["train_images"],
                "cache_dir": os.path.abspath(MAP_STORE),
                "output_dir": os.path.abspath(os.path.dirname(output.tables[0])),
            }
        ),
    threads: workflow.cores
    resources:
        gpu=gpus(),
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q} OMP_NUM_THREADS={threads} papermill {input.notebook:q} {output.notebook:q}"
        " --cwd {params.cwd:q} --kernel python3 --log-output --no-progress-bar"
        " {params.papermill} > {log:q} 2>&1"


rule notebook_03:
    """Notebook 03, SA-CAM: parameter selection, Tables 1-5 (insertion/deletion, adversarial), Figs 4-9."""
    input:
        notebook="notebooks/03_sa_cam.ipynb",
        lib=lib_sources(),
    output:
        tables=[f"{NB03_FIGURES}/{name}" for name in NB03_TABLES],
        figures=[f"{NB03_FIGURES}/{name}" for name in NB03_FIGS],
        notebook=f"{RESULTS}/notebooks/03_sa_cam.ipynb",
    log:
        f"{RESULTS}/logs/notebook_03.log",
    benchmark:
        f"{RESULTS}/benchmarks/notebook_03.tsv"
    params:
        repo=str(REPO),
        cwd=lambda wildcards, input: os.path.dirname(input.notebook),
        papermill=lambda wildcards, input, output: papermill_params(
            {
                "model_name": NB03["model"],
                "second_model": NB03["second_model"],
                "target_layer_cpu": NB03["target_layer_cpu"],
                "target_layer_gpu": NB03["target_layer_gpu"],
                "n_layer_check": NB03["n_layer_check"],
                "data_dir": data_root(),
                "val_dir": NB03["val_dir"],
                "train_dir": NB03["train_dir"],
                "n_per_group_cpu": NB03["n_per_group_cpu"],
                "n_per_group_gpu": NB03["n_per_group_gpu"],
                "n_select_cpu": NB03["n_select_cpu"],
                "n_select_gpu": NB03["n_select_gpu"],
                "thresholds": NB03["thresholds"],
                "lambdas": NB03["lambdas"],
                "perturbation": NB03["perturbation"],
                "n_composites": NB03["n_composites"],
                "n_cascade": NB03["n_cascade"],
                "cascade_layers": NB03["cascade_layers"],
                "n_hosts": NB03["n_hosts"],
                "core_fractions": NB03["core_fractions"],
                "seed": NB03["seed"],
                "device": DEVICE,
                "batch_size": NB03["batch_size"],
                "cache_dir": os.path.abspath(MAP_STORE),
                "output_dir": os.path.abspath(os.path.dirname(output.tables[0])),
            }
        ),
    threads: workflow.cores
    resources:
        gpu=gpus(),
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q} OMP_NUM_THREADS={threads} papermill {input.notebook:q} {output.notebook:q}"
        " --cwd {params.cwd:q} --kernel python3 --log-output --no-progress-bar"
        " {params.papermill} > {log:q} 2>&1"


rule notebook_04:
    """Notebook 04, UCAG: Table 1 (deletion/insertion), Tables 2-3 (pointing games), Table 5 (density), Fig. 2, ablation."""
    input:
        notebook="notebooks/04_ucag.ipynb",
        lib=lib_sources(),
    output:
        tables=[f"{NB04_FIGURES}/{name}" for name in NB04_TABLES],
        figures=[f"{NB04_FIGURES}/{name}" for name in NB04_FIGS],
        notebook=f"{RESULTS}/notebooks/04_ucag.ipynb",
    log:
        f"{RESULTS}/logs/notebook_04.log",
    benchmark:
        f"{RESULTS}/benchmarks/notebook_04.tsv"
    params:
        repo=str(REPO),
        cwd=lambda wildcards, input: os.path.dirname(input.notebook),
        papermill=lambda wildcards, input, output: papermill_params(
            {
                "model_name": NB04["model"],
                "second_model": NB04["second_model"],
                "data_dir": data_root(),
                "val_dir": NB04["val_dir"],
                "loc_dir": NB04["loc_dir"],
                "n_pointing_cpu": NB04["n_pointing_cpu"],
                "n_pointing_gpu": NB04["n_pointing_gpu"],
                "n_causal_cpu": NB04["n_causal_cpu"],
                "n_causal_gpu": NB04["n_causal_gpu"],
                "n_second_cpu": NB04["n_second_cpu"],
                "n_second_gpu": NB04["n_second_gpu"],
                "n_composites": NB04["n_composites"],
                "scales": NB04["scales"],
                "n_scales_cpu": NB04["n_scales_cpu"],
                "n_scales_gpu": NB04["n_scales_gpu"],
                "n_qualitative": NB04["n_qualitative"],
                "seed": NB04["seed"],
                "device": DEVICE,
                "batch_size": NB04["batch_size"],
                "crop_batch": NB04["crop_batch"],
                "cache_dir": os.path.abspath(MAP_STORE),
                "output_dir": os.path.abspath(os.path.dirname(output.tables[0])),
            }
        ),
    threads: workflow.cores
    resources:
        gpu=gpus(),
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q} OMP_NUM_THREADS={threads} papermill {input.notebook:q} {output.notebook:q}"
        " --cwd {params.cwd:q} --kernel python3 --log-output --no-progress-bar"
        " {params.papermill} > {log:q} 2>&1"


rule notebook_05:
    """Notebook 05, FM-G-CAM: Figs. 1/6 (vs per-class Grad-CAM), Fig. 3 (L2 norm), Fig. 5 (activations), the choice of K, composites."""
    input:
        notebook="notebooks/05_fm_g_cam.ipynb",
        lib=lib_sources(),
    output:
        tables=[f"{NB05_FIGURES}/{name}" for name in NB05_TABLES],
        figures=[f"{NB05_FIGURES}/{name}" for name in NB05_FIGS],
        notebook=f"{RESULTS}/notebooks/05_fm_g_cam.ipynb",
    log:
        f"{RESULTS}/logs/notebook_05.log",
    benchmark:
        f"{RESULTS}/benchmarks/notebook_05.tsv"
    params:
        repo=str(REPO),
        cwd=lambda wildcards, input: os.path.dirname(input.notebook),
        papermill=lambda wildcards, input, output: papermill_params(
            {
                "model_name": NB05["model"],
                "data_dir": data_root(),
                "val_dir": NB05["val_dir"],
                "k": NB05["k"],
                "k_figure": NB05["k_figure"],
                "photos": NB05["photos"],
                "n_figure_val": NB05["n_figure_val"],
                "max_k": NB05["max_k"],
                "n_choose_k_cpu": NB05["n_choose_k_cpu"],
                "n_choose_k_gpu": NB05["n_choose_k_gpu"],
                "n_composites_cpu": NB05["n_composites_cpu"],
                "n_composites_gpu": NB05["n_composites_gpu"],
                "seed": NB05["seed"],
                "device": DEVICE,
                "batch_size": NB05["batch_size"],
                "output_dir": os.path.abspath(os.path.dirname(output.tables[0])),
            }
        ),
    threads: workflow.cores
    resources:
        gpu=gpus(),
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q} OMP_NUM_THREADS={threads} papermill {input.notebook:q} {output.notebook:q}"
        " --cwd {params.cwd:q} --kernel python3 --log-output --no-progress-bar"
        " {params.papermill} > {log:q} 2>&1"
