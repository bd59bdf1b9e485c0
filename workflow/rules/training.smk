# The learned attentions: AM-Grad-CAM's (paper 01) and L-CAM's four (paper 02), one checkpoint per job; and
# SA-CAM's parameters (paper 03), chosen on the training sample before its maps are computed.

rule am_features:
    """The Grad-CAM activations, gradients and predicted classes of AM-Grad-CAM's training images, computed once
    for both objectives and every seed (lib.train_am_gradcam --precompute-only)."""
    input:
        data=data_inputs(NB01["train_dir"]),
        code=sources("train_am_gradcam.py", "cams/hooks.py"),
    output:
        f"{RESULTS}/cache/am_features_{{model}}.pt",
    log:
        f"{RESULTS}/logs/am_features_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/am_features_{{model}}.tsv"
    params:
        repo=str(REPO),
        data_dir=job_data_dir,
        train_dir=NB01["train_dir"],
        images=NB01["train_images"],
        batch_size=NB01["train_batch_size"],
        cpu_chunk=NB01["train_cpu_chunk"],
        seed=NB01["seed"],
        device=DEVICE,
    threads: threads("train")
    resources:
        **resources("train"),
    priority: TRAIN_AM_PRIORITY
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} python -m lib.train_am_gradcam"
        " --model {wildcards.model:q} --data-dir {params.data_dir:q} --train-dir {params.train_dir:q}"
        " --images {params.images} --batch-size {params.batch_size} --cpu-chunk {params.cpu_chunk} --seed {params.seed}"
        " --threads {threads} --device {params.device:q} --precompute-only --features-cache {output:q} > {log:q} 2>&1"


rule train_am_gradcam:
    """Train AM-Grad-CAM's channel/spatial attention on the frozen classifier (paper 01), with one objective
    (masked-image: the classifier on the image times the map; feature-ce: its head on the attended features) and
    one seed."""
    input:
        data=data_inputs(NB01["train_dir"]),
        code=sources("train_am_gradcam.py", "cams/attention.py", "cams/lcam.py", "determinism.py"),
        features=f"{RESULTS}/cache/am_features_{{model}}.pt",
    output:
        checkpoint=checkpoint_path("{model}", "{objective}", "{seed}"),
    wildcard_constraints:
        objective="|".join(AM_OBJECTIVES),
        seed=r"\d+",
    log:
        f"{RESULTS}/logs/train_am_gradcam_{{model}}_{{objective}}_s{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_am_gradcam_{{model}}_{{objective}}_s{{seed}}.tsv"
    params:
        repo=str(REPO),  # first on PYTHONPATH (before the caller's): jobs import lib from this checkout (also under --use-conda)
        data_dir=job_data_dir,
        train_dir=NB01["train_dir"],
        epochs=NB01["train_epochs"],
        images=NB01["train_images"],
        batch_size=NB01["train_batch_size"],
        cpu_chunk=NB01["train_cpu_chunk"],
        device=DEVICE,
    threads: threads("train")
    resources:
        **resources("train"),
    priority: TRAIN_AM_PRIORITY
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} python -m lib.train_am_gradcam"
        " --model {wildcards.model:q} --data-dir {params.data_dir:q} --train-dir {params.train_dir:q}"
        " --epochs {params.epochs} --images {params.images} --batch-size {params.batch_size}"
        " --objective {wildcards.objective} --cpu-chunk {params.cpu_chunk} --seed {wildcards.seed} --threads {threads}"
        " --device {params.device:q} --features-cache {input.features:q} --out {output.checkpoint:q}"
        " > {log:q} 2>&1"


# How rule train_lcam launches lib.train_lcam (its docstring, "Data-parallel training"): notebook02.train_gpus
# processes per node, one GPU each (default 1), on notebook02.train_nodes nodes (default 1; > 1 needs SLURM).
LCAM_GPUS = int(NB02.get("train_gpus", 1))
LCAM_NODES = int(NB02.get("train_nodes", 1))
# the first node of the SLURM job (the executor plugin's job step drops SLURM_JOB_NODELIST: ask squeue then)
LCAM_RDZV_HOST = '$(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(squeue -h -j $SLURM_JOB_ID -o %N)}" | head -n1)'
# `python` (one process); `torchrun --standalone` (several GPUs on one node); across nodes, `srun` starting one
# torchrun per node inside the SLURM allocation, the rendezvous on the job's first node
LCAM_LAUNCHER = (
    f"srun --nodes {LCAM_NODES} --ntasks {LCAM_NODES} --ntasks-per-node 1 --gpus-per-node {LCAM_GPUS}"
    f" torchrun --nnodes {LCAM_NODES} --nproc_per_node {LCAM_GPUS} --rdzv_backend c10d"
    f" --rdzv_id $SLURM_JOB_ID --rdzv_endpoint {LCAM_RDZV_HOST}:29500"
    if LCAM_NODES > 1
    else f"torchrun --standalone --nproc_per_node {LCAM_GPUS}" if LCAM_GPUS > 1 else "python"
)
# config resources.train with train_gpus GPUs (on CUDA); across nodes, what snakemake-executor-plugin-slurm turns
# into `sbatch --nodes N --ntasks N --ntasks-per-node 1 --gpus-per-node G`: `mpi` makes its job step run the
# command (whose srun starts the tasks) instead of wrapping it in a one-task srun; `gpu` stays 0, since the plugin
# would turn `tasks` into --ntasks-per-gpu for a GPU job
LCAM_RESOURCES = (
    {**resources("train"), "gpu": 0, "nodes": LCAM_NODES, "tasks": LCAM_NODES, "mpi": "srun",
     "slurm_extra": f"--gpus-per-node={LCAM_GPUS} --ntasks-per-node=1"}
    if LCAM_NODES > 1
    else {**resources("train"), "gpu": gpus() * LCAM_GPUS}
)


rule train_lcam:
    """Train one L-CAM attention on the frozen classifier (paper 02): variant img|fm, loss full|ce.
    notebook02.train_gpus > 1: data-parallel with torchrun on one node; train_nodes > 1: across SLURM nodes
    (profiles/slurm); notebook02.train_amp: CUDA mixed precision (--amp)."""
    input:
        data=data_inputs(NB02["train_dir"]),
        code=sources("train_lcam.py", "cams/lcam.py", "determinism.py"),
    output:
        checkpoint=lcam_checkpoint("{model}", "{variant}_{loss}", "{seed}"),
    wildcard_constraints:
        variant="img" if lcam_fm_trainer() == "features" else "img|fm",  # else rule train_lcam_features
        loss="full|ce",
        seed=r"\d+",
    log:
        f"{RESULTS}/logs/train_lcam_{{model}}_{{variant}}_{{loss}}_s{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_lcam_{{model}}_{{variant}}_{{loss}}_s{{seed}}.tsv"
    params:
        repo=str(REPO),
        data_dir=job_data_dir,
        train_dir=NB02["train_dir"],
        epochs=NB02["train_epochs"],
        images=NB02["train_images"],
        batch_size=NB02["train_batch_size"],
        lr=NB02["train_lr"],
        lr_decay=NB02["train_lr_decay"],
        cpu_chunk=NB02["train_cpu_chunk"],
        device=DEVICE,
        ce_only=lambda wildcards: "--ce-only" if wildcards.loss == "ce" else "",
        amp="--amp" if NB02.get("train_amp", False) else "",
        launcher=LCAM_LAUNCHER,
    threads: threads("train")
    resources:
        **LCAM_RESOURCES,
    priority: NOTEBOOK_PRIORITY["02"]
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} {params.launcher}"
        " -m lib.train_lcam --model {wildcards.model:q} --variant {wildcards.variant} {params.ce_only}"
        " --data-dir {params.data_dir:q} --train-dir {params.train_dir:q}"
        " --epochs {params.epochs} --images {params.images} --batch-size {params.batch_size}"
        " --lr {params.lr} --lr-decay {params.lr_decay} --cpu-chunk {params.cpu_chunk} --seed {wildcards.seed} --device {params.device:q}"
        " {params.amp} --out {output.checkpoint:q} > {log:q} 2>&1"


rule lcam_features:
    """The feature maps and model-truth labels of seeded augmented views of every training image, computed once
    (lib.lcam_features cache): L-CAM-Fm trains on them (rule train_lcam_features) with no backbone pass per step."""
    input:
        data=data_inputs(NB02["train_dir"]),
        code=sources("lcam_features.py", "train_lcam.py", "cams/activation.py"),
    output:
        cache=lcam_features_file("{model}"),  # written last: the folder holds features.npy and targets.npy
    log:
        f"{RESULTS}/logs/lcam_features_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lcam_features_{{model}}.tsv"
    params:
        repo=str(REPO),
        data_dir=job_data_dir,
        train_dir=NB02["train_dir"],
        images=NB02["train_images"],
        views=NB02["fm_views"],
        seed=NB02["seed"],
        device=DEVICE,
    threads: threads("train")
    resources:
        **resources("train"),
    priority: NOTEBOOK_PRIORITY["02"]
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} python -m lib.lcam_features"
        " cache --model {wildcards.model:q} --data-dir {params.data_dir:q} --train-dir {params.train_dir:q}"
        " --images {params.images} --views {params.views} --seed {params.seed} --threads {threads}"
        " --device {params.device:q} --out \"$(dirname {output.cache:q})\" > {log:q} 2>&1"


rule train_lcam_features:
    """Train L-CAM-Fm (loss full|ce, one seed) on the cached feature maps until its validation loss stops improving
    (lib.lcam_features train); the paper profile trains it on images instead (notebook02.fm_trainer: images)."""
    input:
        cache=lcam_features_file("{model}"),
        code=sources("lcam_features.py", "train_lcam.py", "cams/lcam.py", "determinism.py"),
    output:
        checkpoint=lcam_checkpoint("{model}", "fm_{loss}", "{seed}"),
    wildcard_constraints:
        loss="full|ce" if lcam_fm_trainer() == "features" else "(?!)",  # fm_trainer images: rule train_lcam
        seed=r"\d+",
    log:
        f"{RESULTS}/logs/train_lcam_{{model}}_fm_{{loss}}_s{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_lcam_{{model}}_fm_{{loss}}_s{{seed}}.tsv"
    params:
        repo=str(REPO),
        lr=NB02["fm_lr"],
        max_epochs=NB02["fm_max_epochs"],
        plateau=NB02["fm_plateau"],
        patience=NB02["fm_patience"],
        batch_size=NB02["train_batch_size"],
        device=DEVICE,
        ce_only=lambda wildcards: "--ce-only" if wildcards.loss == "ce" else "",
    threads: threads("train")
    resources:
        **resources("train"),
    priority: NOTEBOOK_PRIORITY["02"]
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} python -m lib.lcam_features"
        " train --cache \"$(dirname {input.cache:q})\" {params.ce_only} --seed {wildcards.seed} --lr {params.lr}"
        " --max-epochs {params.max_epochs} --plateau {params.plateau} --patience {params.patience}"
        " --batch-size {params.batch_size} --threads {threads} --device {params.device:q} --out {output.checkpoint:q}"
        " > {log:q} 2>&1"


rule select_sacam:
    """SA-CAM's selection grid (paper 03): every (threshold, lambda1, lambda2) of notebook 03's grid scored on its
    training images at a layer (lib.experiments.sacam); the evaluate jobs of `selection: select` and notebook 03
    derive the chosen point from it (lib.cams.sacam.parameters_from_grid)."""
    input:
        data=data_inputs(NB03["train_dir"]),
        code=sources("experiments/sacam", "cams/sacam.py", "cams/score.py", "metrics"),
    output:
        selection_file("{model}", "{layer}"),
    wildcard_constraints:
        layer=r"[A-Za-z0-9_.\-]+",
    log:
        f"{RESULTS}/logs/select_sacam/{{model}}/{{layer}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/select_sacam/{{model}}/{{layer}}.tsv"
    params:
        repo=str(REPO),
        data_dir=job_data_dir,
        train_dir=NB03["train_dir"],
        n_select=NB03["n_select_gpu" if ON_GPU else "n_select_cpu"],
        thresholds=NB03["thresholds"],
        lambdas=NB03["lambdas"],
        perturbation=NB03["perturbation"],
        seed=NB03["seed"],
        batch_size=NB03["batch_size"],
        device=DEVICE,
    threads: threads("evaluate")
    resources:
        **resources("evaluate"),
    priority: SACAM_PRIORITY
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} python -m lib.experiments.sacam"
        " --model {wildcards.model:q} --layer {wildcards.layer:q} --data-dir {params.data_dir:q}"
        " --train-dir {params.train_dir:q} --n-select {params.n_select} --thresholds {params.thresholds:q}"
        " --lambdas {params.lambdas:q} --perturbation {params.perturbation:q} --seed {params.seed}"
        " --batch-size {params.batch_size} --device {params.device:q} --out {output:q} > {log:q} 2>&1"
