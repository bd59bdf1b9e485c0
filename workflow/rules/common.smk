# Shared definitions of the rules: paths, the data inputs, the notebooks' parameters and the shards each
# notebook reads, threads and resources from the config.

import inspect
import json
import os
import re
import shlex
import sys
from pathlib import Path

# Jobs call `python` and `papermill` from the environment Snakemake itself runs in (the .venv of
# `make pipeline`), also when that environment is not activated.
os.environ.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))

REPO = Path(workflow.basedir)
sys.path.insert(0, str(REPO))  # lib from this checkout, also when snakemake runs outside .venv
from lib.allocator import export_huge_pages  # noqa: E402
from lib.config import data_dir, resolve_device, split_dir  # noqa: E402
from lib.cams import RISE  # noqa: E402
from lib.evaluation import GROUPS, parse_part, part_name, part_names, shards_for, shared_passes  # noqa: E402
from lib.outputs import declared, notebooks, pipeline_outputs, reads  # noqa: E402

# Every job's malloc asks for transparent huge pages (lib.allocator.export_huge_pages; CAM_MALLOC_TUNING=0 or your
# own glibc.malloc.hugetlb setting keeps it off): on the VMs the compendium is measured on, fresh memory costs
# ~10 s/GB in 4 KiB pages, and huge pages cut a shard's system time by a third. The numbers are unchanged.
export_huge_pages()

RESULTS = config["results_dir"]
FIGURES = config["figures_dir"]
DEVICE = str(config["device"])
# The device the jobs will run on, known when the DAG is built: a notebook evaluates its _gpu image count
# on a GPU and its _cpu count on a CPU, and the shards it reads follow from that count.
ON_GPU = DEVICE.startswith("cuda") or (DEVICE == "auto" and resolve_device("auto").type == "cuda")
# One map store for every job (lib.analysis.map_store): a map of the same model, method, settings,
# layer, image and target is computed once, whichever job asks first.
MAP_STORE = f"{RESULTS}/cache/maps"
EVAL = config["evaluation"]
EVAL_DIR = f"{RESULTS}/eval"
NOTEBOOKS = notebooks()  # {"01": "01_attention_map_gradcam", ...}
# With --use-conda, jobs run in the environment of config/envs/compendium.yml (the dependencies of
# pyproject.toml; `lib` comes from the checkout through PYTHONPATH); `make pipeline` uses .venv.
CONDA_ENV = str(REPO / "config" / "envs" / "compendium.yml")


def data_root():
    """config data_dir, else $CAM_DATA_DIR, else ../shared/data when it exists, else local-data/
    (lib.config.data_dir; `make data` builds the samples there); absolute."""
    return str(data_dir(str(config.get("data_dir") or "")).resolve())


def data_inputs(split):
    """The data set's checksums (SHA256SUMS) as an input, so a changed sample reruns what reads it;
    its labels.csv where there are no checksums (your own ILSVRC2012 folder), else nothing."""
    root = split_dir(split, data_root())
    for name in ("SHA256SUMS", "labels.csv"):
        if (root / name).is_file():
            return [str(root / name)]
    return []


def n_images(split):
    """Images in a data set with a labels.csv (the sample layout); None for class folders."""
    labels = split_dir(split, data_root()) / "labels.csv"
    if not labels.is_file():
        return None
    with open(labels) as f:
        return max(0, sum(1 for line in f if line.strip()) - 1)


def gpus():
    """GPUs a job asks for (Snakemake's standard `gpu` resource): 1 when the jobs run on CUDA."""
    return 1 if ON_GPU else 0


# The longest jobs start first, so that two one-thread jobs keep both cores busy to the end: AM-Grad-CAM's
# training, the longest one-thread job (206 s in results/benchmarks), first of all (stop 27's fresh-clone run
# started it last, and it ran 131 s alone on one core); then notebook 02's chain (its four trainings and the
# shards, which get notebook 02's priority: Snakemake does not pass priorities upstream itself), notebook 03,
# then 04; the short jobs (notebooks 05 and 01, the calibration) fill the gaps at the end.
NOTEBOOK_PRIORITY = {"02": 10, "03": 5, "04": 3}
TRAIN_AM_PRIORITY = 20
HEAD_PRIORITY = 30  # notebook 02's Score-CAM and RISE heads (evaluate_head): RISE's is longer than AM's training
# The methods whose heads notebook 02 reads (a regular expression of their keys): its `reads:` entries `within`
# another count (a few images of a slow method).
SLOW_HEADS = "|".join(re.escape(m) for spec in reads("02") if spec.get("within") for m in spec["methods"]) or "(?!)"
# Notebook 03's chain (select_sacam -> SA-CAM's head, 132 s on one thread -> notebook 03, 156 s) is the longest after
# RISE's head: it starts right after the slow heads, or it ends the run alone (stop 30's first fresh clone: 341 s
# started at 768 s of 1113). Notebook 04's heads (many short jobs) fill the gaps.
SACAM_PRIORITY = 25
SACAM_HEADS = "|".join(re.escape(m) for spec in reads("03") for m in spec["methods"]) or "(?!)"


def threads(kind):
    """config threads.<kind>; 0 means every core Snakemake was given."""
    return int(config["threads"][kind]) or workflow.cores


def resources(kind):
    """config resources.<kind> (mem_mb, runtime in minutes) and the gpu count."""
    return {**config["resources"][kind], "gpu": gpus()}


def sources(*folders):
    """The Python files under lib/<folder> (or the files named): a job depends on the code it runs."""
    files = []
    for folder in folders:
        path = REPO / "lib" / folder
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return sorted(str(p.relative_to(REPO)) for p in files)


def lib_sources():
    """The library's Python files: notebooks depend on them, so a library change reruns them."""
    return sources("")


NB01 = config["notebook01"]
NB02 = config["notebook02"]
LCAM_VARIANTS = [f"{variant}_{loss}" for variant in ("fm", "img") for loss in ("full", "ce")]
AM_OBJECTIVES = ["masked-image", "feature-ce"]  # lib.train_am_gradcam's objectives (the first: `train`)


def train_seeds(section):
    """The seeds every learned attention of a notebook is trained with (`train_seeds`; the first is `seed`'s)."""
    return [int(s) for s in section.get("train_seeds") or [section["seed"]]]


def checkpoint_path(model, objective="masked-image", seed=None):
    """AM-Grad-CAM's trained attention of a model (rule train_am_gradcam), one per objective and seed."""
    seed = NB01["seed"] if seed is None else seed
    return f"{RESULTS}/checkpoints/am_gradcam_{model}_{objective}_s{seed}.pt"


def lcam_checkpoint(model, variant, seed=None):
    """An L-CAM checkpoint of a model, written by train_lcam (L-CAM-Img; L-CAM-Fm on the paper profile) or
    train_lcam_features (L-CAM-Fm on cached feature maps); variant: `<fm|img>_<full|ce>` (or wildcards)."""
    seed = NB02["seed"] if seed is None else seed
    return f"{RESULTS}/checkpoints/lcam_{model}_{variant}_s{seed}.pt"


def lcam_features_file(model):
    """The meta.json of L-CAM-Fm's feature cache of a model (rule lcam_features), beside its arrays."""
    return f"{RESULTS}/cache/lcam_features_{model}/meta.json"


def lcam_checkpoints(model):
    """Notebook 02's L-CAM checkpoints: L-CAM-Fm, L-CAM-Img and their CE-only ablations, every training seed."""
    return [lcam_checkpoint(model, v, seed) for seed in train_seeds(NB02) for v in LCAM_VARIANTS]


def am_checkpoints(model):
    """Notebook 01's AM-Grad-CAM checkpoints: both objectives, every training seed."""
    return [checkpoint_path(model, objective, seed) for seed in train_seeds(NB01) for objective in AM_OBJECTIVES]


def lcam_fm_trainer():
    """How L-CAM-Fm is trained, `features` (by train_lcam_features, on cached feature maps of augmented views; the
    default and full profiles) or `images` (by train_lcam, a backbone pass per step; ImageNet's train/)."""
    trainer = NB02.get("fm_trainer", "features")
    if trainer not in ("features", "images"):
        raise ValueError(f"notebook02.fm_trainer: {trainer!r}. Fix: `features` or `images`.")
    return trainer


def job_data_dir(wildcards):
    """The data root a job reads (a parameter: the data sets are not files Snakemake creates)."""
    return data_root()


def papermill_params(params):
    """papermill arguments for a dict of notebook parameters: strings raw (-r), numbers typed (-p), lists and
    mappings as YAML (-y, e.g. train_seeds: [0, 1, 2])."""
    args = []
    for name, value in params.items():
        if isinstance(value, (bool, int, float)):
            args += ["-p", name, str(value)]
        elif isinstance(value, (list, tuple, dict)):
            args += ["-y", json.dumps({name: value})]  # JSON is YAML
        else:
            args += ["-r", name, str(value)]
    return shlex.join(args)


# --------------------------------------------------------------------------------------------- shards
def shard_file(model, method, target, group, shard):
    """The rows of one shard (shard: a number, a part name such as head-0008, or "{shard}" for the rule's pattern)."""
    shard = shard if isinstance(shard, str) else part_name(shard)
    return f"{EVAL_DIR}/{model}/{method}/{target}/{group}/{shard}.parquet"


def shard_files(model, methods, targets, groups, n, val_dir):
    """The parts holding the first n images (0: all) of val_dir, for each method x target x group: its shards,
    or one head when n is smaller than a shard (lib.evaluation.part_names)."""
    parts = part_names(n, EVAL["shard_size"], n_images(val_dir))
    return [shard_file(model, m, t, g, k) for m in methods for t in targets for g in groups for k in parts]


def part_arguments(part):
    """lib.evaluation's arguments for a part: `--shard 3 --shard-size 128`, or `--head 8`."""
    shard, head = parse_part(part)
    return f"--head {head}" if head else f"--shard {shard} --shard-size {EVAL['shard_size']}"


def reads_model(nb, spec):
    """The model of a `reads:` entry: the notebook's `model`, or the parameter its `model:` names (notebook 04's
    `second_model`; "" when that parameter is empty: the entry reads nothing)."""
    section = config[f"notebook{nb}"]
    return str(section[spec["model"]] if spec.get("model") else section["model"])


def notebook_rows(nb):
    """The evaluation parts notebook nb reads (config/outputs.yaml `reads:`), for its image counts."""
    specs, section = reads(nb), config[f"notebook{nb}"]
    if not specs:
        return []
    if int(section["seed"]) != int(EVAL["seed"]):
        raise ValueError(f"notebook{nb}.seed ({section['seed']}) differs from evaluation.seed ({EVAL['seed']}): the "
                         "shards slice the evaluation's seeded order, so a notebook reading them must draw with the same "
                         "seed. Fix: set both to the same value.")
    if section["val_dir"] != EVAL["val_dir"]:
        raise ValueError(f"notebook{nb}.val_dir ({section['val_dir']}) differs from evaluation.val_dir "
                         f"({EVAL['val_dir']}): the shards a notebook reads are of evaluation.val_dir. Fix: set both to "
                         "the same folder.")
    files = []
    for spec in specs:
        n = int(section[f"{spec['images']}_{'gpu' if ON_GPU else 'cpu'}"]) * int(spec.get("factor", 1))
        outer = int(section[f"{spec['within']}_{'gpu' if ON_GPU else 'cpu'}"]) if spec.get("within") else 0
        if outer > 0:  # a subset of another count's images (notebook 02: n_slow of its n_images; 0: all)
            n = min(n, outer) if n > 0 else outer
        model = reads_model(nb, spec)
        if model:
            files += shard_files(model, spec["methods"], [spec["target"]], spec["groups"], n, section["val_dir"])
    return files


def trained_checkpoint(value, model):
    """The checkpoint a method's `checkpoint:` setting names for a model; `@<seed>` at the end picks a training
    seed (default: the notebook's `seed`). `train` is the train_am_gradcam rule's AM-Grad-CAM attention (its
    masked-image objective), `train:am_<objective>` another objective's; `train:lcam_<variant>_<loss>` an L-CAM
    training's (e.g. `train:lcam_fm_full@1`); anything else is a path of your own (None: no checkpoint)."""
    if not (isinstance(value, str) and (value == "train" or value.startswith(("train:", "train@")))):
        return value or None
    name, _, seed = value.partition("@")
    if seed and not seed.isdigit():
        raise ValueError(f"checkpoint: {value}: the seed after `@` must be a number. Fix: e.g. `{name}@1`.")
    seed = int(seed) if seed else None
    name = name.removeprefix("train").removeprefix(":") or "am_masked-image"
    if name.startswith("am_") and name.removeprefix("am_") in AM_OBJECTIVES:
        return checkpoint_path(model, name.removeprefix("am_"), seed)
    if name.startswith("lcam_") and name.removeprefix("lcam_") in LCAM_VARIANTS:
        return lcam_checkpoint(model, name.removeprefix("lcam_"), seed)
    raise ValueError(f"checkpoint: {value} names no training rule. Fix: use `train` or train:am_<one of "
                     f"{', '.join(AM_OBJECTIVES)}> (AM-Grad-CAM) or train:lcam_<one of {', '.join(LCAM_VARIANTS)}>, "
                     "optionally with @<seed>.")


NB03 = config["notebook03"]


def device_value(value):
    """A setting given per device (`{cpu: ..., gpu: ...}`, e.g. notebook 03's layer) for the device the jobs run
    on; any other value as is."""
    if isinstance(value, dict) and set(value) == {"cpu", "gpu"}:
        return value["gpu" if ON_GPU else "cpu"]
    return value


def selection_file(model, layer):
    """SA-CAM's selection grid of a model and layer (`default`, `last-block` or a module name): rule select_sacam."""
    return f"{RESULTS}/selection/{model}/sacam_{layer}.csv"


def device_settings(method):
    """A method key's settings (config evaluation.methods) with per-device values for this device."""
    return {k: device_value(v) for k, v in (EVAL["methods"].get(method) or {}).items()}


def selection_input(settings, model):
    """The select_sacam rule's grid when a key's settings ask for it (`selection: select`), else None."""
    return selection_file(model, settings.get("target_layer", "default")) if settings.get("selection") == "select" else None


def method_settings(method, model):
    """The settings of a method key (config evaluation.methods) for the evaluate jobs. Per-device values for this
    device; the checkpoint a training job writes and SA-CAM's selection grid as absolute paths."""
    settings = device_settings(method)
    path = trained_checkpoint(settings.get("checkpoint"), model)  # (not `checkpoint`: a Snakemake keyword)
    if path:
        settings["checkpoint"] = os.path.abspath(path)
    grid = selection_input(settings, model)
    if grid:
        settings["selection"] = os.path.abspath(grid)
    return settings


def method_inputs(wildcards):
    """A method's trained weights (AM-Grad-CAM's or an L-CAM checkpoint) when a training rule writes them, and
    SA-CAM's selection grid when its `selection` is the select_sacam rule's; the same for its companions."""
    files = []
    for method in [wildcards.method, *companions(wildcards)]:
        settings = device_settings(method)
        value = settings.get("checkpoint")
        path = trained_checkpoint(value, wildcards.model)
        files += [path] if path and str(value).startswith("train") else []
        grid = selection_input(settings, wildcards.model)
        files += [grid] if grid else []
    return sorted(set(files))


_WANTED_GROUPS = {}


def wanted_groups():
    """{(model, method, target, part): the metric groups wanted of it} over every part a notebook reads
    (config/outputs.yaml `reads:`) and the full profile evaluates (FULL_SHARDS)."""
    if not _WANTED_GROUPS:
        for path in [f for nb in NOTEBOOKS for f in notebook_rows(nb)] + FULL_SHARDS:
            model, method, target, group, part = Path(path).with_suffix("").parts[-5:]
            _WANTED_GROUPS.setdefault((model, method, target, part), set()).add(group)
    return _WANTED_GROUPS


def map_family(model, method, target, part):
    """The method keys wanted of a model, target and part whose maps come from the same passes as method's
    (lib.evaluation.shared_passes: notebook 04's UCAG variants of one crop geometry), in evaluation.methods order;
    [method] for a key whose maps are its own."""
    own = shared_passes(method, device_settings(method))
    if own is None:
        return [method]
    keys = {m for (mo, m, t, p) in wanted_groups() if (mo, t, p) == (model, target, part)}
    family = [m for m in EVAL["methods"] if m in keys and shared_passes(m, device_settings(m)) == own]
    return family if method in family else [method]  # a key nothing wants (a file asked for by hand): alone


def first_group(model, method, target, part):
    """The first metric group wanted of a model, method, target and part, in lib.evaluation.GROUPS order."""
    groups = wanted_groups().get((model, method, target, part), set())
    return next((g for g in GROUPS if g in groups), None)


def maps_first(wildcards):
    """The rows of the job that makes a part's maps, for every other job of the same model, target and part that
    reads them: the first wanted group in lib.evaluation.GROUPS order (ad_ic where it is wanted; notebook 04's
    parts: causal) of the family's first key (map_family: UCAG's variants share their crop passes, and that job
    makes all their maps, companions()), instead of computing the same maps side by side (RISE: 18 s per image on
    one core; UCAG: 36 crops per image and method)."""
    model, target, part = wildcards.model, wildcards.target, wildcards.shard
    leader = map_family(model, wildcards.method, target, part)[0]
    group = first_group(model, leader, target, part)
    if group is None or (leader, group) == (wildcards.method, wildcards.group):
        return []
    if leader == wildcards.method and list(GROUPS).index(group) > list(GROUPS).index(wildcards.group):
        return []  # a group nobody asked for (a job run by hand): it makes its own maps
    return [shard_file(model, leader, target, group, part)]


def companions(wildcards):
    """The other keys of the family whose maps the job makes (lib.evaluation's --companions, a JSON object of their
    settings): only for the family's first key at its first group (maps_first), else {}."""
    model, target, part = wildcards.model, wildcards.target, wildcards.shard
    family = map_family(model, wildcards.method, target, part)
    if family[0] != wildcards.method or first_group(model, wildcards.method, target, part) != wildcards.group:
        return {}
    return {m: method_settings(m, model) for m in family[1:]}


def check_methods():
    """Every method a notebook reads or the full profile evaluates has settings in evaluation.methods."""
    wanted = set(EVAL["full_methods"]) | {m for nb in NOTEBOOKS for spec in reads(nb) for m in spec["methods"]}
    unknown = sorted(wanted - set(EVAL["methods"]))
    if unknown:
        raise ValueError(f"methods {unknown} (config/outputs.yaml `reads:` or evaluation.full_methods) are not in "
                         "evaluation.methods. Fix: add them there (with {} for the defaults).")


def check_rise_settings():
    """Notebook 02 builds its RISE from notebook02.rise_masks and its seed; the rise rows it reads must have been
    computed with the same settings (else it recomputes them, and the pipeline computed them for nothing)."""
    if not any("rise" in spec["methods"] for spec in reads("02")):
        return
    defaults = inspect.signature(RISE).parameters
    rise = EVAL["methods"].get("rise") or {}
    have = {k: int(rise.get(k, defaults[k].default)) for k in ("n_masks", "seed")}
    want = {"n_masks": int(config["notebook02"]["rise_masks"]), "seed": int(config["notebook02"]["seed"])}
    if have != want:
        raise ValueError(f"evaluation.methods.rise {have} differs from notebook 02's RISE (rise_masks, seed) {want}. "
                         "Fix: set evaluation.methods.rise to {n_masks: <rise_masks>, seed: <seed>} in the same config.")


def check_sacam_settings():
    """Notebook 03 builds its Grad-CAM, Score-CAM and SA-CAM at its layer (target_layer_cpu/_gpu), SA-CAM with its
    perturbation and seed at the select_sacam rule's point; the keys whose rows it reads must say the same (else it
    recomputes them, and the pipeline computed them for nothing)."""
    layer = NB03["target_layer_gpu" if ON_GPU else "target_layer_cpu"]
    for spec in reads("03"):
        for key in spec["methods"]:
            settings = method_settings(key, NB03["model"])
            have = {"target_layer": settings.get("target_layer", "default")}
            want = {"target_layer": layer}
            if settings.get("method", key) == "sacam":
                have.update(perturbation=settings.get("perturbation", "blur"), seed=int(settings.get("seed", 0)),
                            selection=settings.get("selection"))
                want.update(perturbation=NB03["perturbation"], seed=int(NB03["seed"]),
                            selection=os.path.abspath(selection_file(NB03["model"], layer)))
            if have != want:
                raise ValueError(f"evaluation.methods.{key} {have} differs from notebook 03's {want}. Fix: set the key's "
                                 "settings to notebook03's (target_layer: {cpu: <target_layer_cpu>, gpu: "
                                 "<target_layer_gpu>}; SA-CAM: perturbation, seed, selection: select).")


check_methods()
check_rise_settings()
check_sacam_settings()
