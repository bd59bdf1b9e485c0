# The learned attentions: AM-Grad-CAM's (paper 01) and L-CAM's four (paper 02), one checkpoint per job; and
# SA-CAM's parameters (paper 03), chosen on the training sample before its maps are computed.

rule train_am_gradcam:
    """Train AM-Grad-CAM's channel/spatial attention on the frozen classifier (paper 01)."""
    input:
        data=data_inputs(NB01["train_dir"]),
        code=sources("train_am_gradcam.py", "cams/attention.py"),
    output:
        checkpoint=checkpoint_path("{model}"),
    log:
        f"{RESULTS}/logs/train_am_gradcam_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_am_gradcam_{{model}}.tsv"
    params:
        repo=str(REPO),  # first on PYTHONPATH (before the caller's): jobs import lib from this checkout (also under --use-conda)
        data_dir=job_data_dir,
        train_dir=NB01["train_dir"],
        epochs=NB01["train_epochs"],
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
        " --epochs {params.epochs} --images {params.images} --batch-size {params.batch_size}"
        " --cpu-chunk {params.cpu_chunk} --seed {params.seed} --device {params.device:q} --out {output.checkpoint:q}"
        " > {log:q} 2>&1"


rule train_lcam:
    """Train one L-CAM attention on the frozen classifier (paper 02): variant img|fm, loss full|ce."""
    input:
        data=data_inputs(NB02["train_dir"]),
        code=sources("train_lcam.py", "cams/lcam.py"),
    output:
        checkpoint=lcam_checkpoint("{model}", "{variant}_{loss}"),
    log:
        f"{RESULTS}/logs/train_lcam_{{model}}_{{variant}}_{{loss}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_lcam_{{model}}_{{variant}}_{{loss}}.tsv"
    params:
        repo=str(REPO),
        data_dir=job_data_dir,
        train_dir=NB02["train_dir"],
        epochs=NB02["train_epochs"],
        images=NB02["train_images"],
        batch_size=NB02["train_batch_size"],
        lr_decay=NB02["train_lr_decay"],
        cpu_chunk=NB02["train_cpu_chunk"],
        seed=NB02["seed"],
        device=DEVICE,
        ce_only=lambda wildcards: "--ce-only" if wildcards.loss == "ce" else "",
    threads: threads("train")
    resources:
        **resources("train"),
    priority: NOTEBOOK_PRIORITY["02"]
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} python -m lib.train_lcam"
        " --model {wildcards.model:q} --variant {wildcards.variant} {params.ce_only}"
        " --data-dir {params.data_dir:q} --train-dir {params.train_dir:q}"
        " --epochs {params.epochs} --images {params.images} --batch-size {params.batch_size}"
        " --lr-decay {params.lr_decay} --cpu-chunk {params.cpu_chunk} --seed {params.seed} --device {params.device:q}"
        " --out {output.checkpoint:q} > {log:q} 2>&1"


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
