# One shard of per-image metric rows: model x method x target rule x metric group x shard (lib.evaluation).


wildcard_constraints:
    model=r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*?",
    method=r"[a-z0-9+\-]+",
    target=r"predicted|label",
    group=r"ad_ic|ad_ic_normalized|causal|localisation|density",
    shard=r"\d{4}",
    variant=r"img|fm",
    loss=r"full|ce",


rule evaluate:
    """Per-image rows of one metric group for one shard of the seeded order of evaluation.val_dir: maps of
    the method for the target rule through the map store, every protocol of the group (lib.evaluation.suite)."""
    input:
        data=data_inputs(EVAL["val_dir"]),
        checkpoint=method_inputs,
        maps=maps_first,
        code=sources("evaluation", "metrics", "cams", "inference", "analysis/map_store.py", "models.py"),
    output:
        shard_file("{model}", "{method}", "{target}", "{group}", "{shard}"),
    log:
        f"{RESULTS}/logs/evaluate/{{model}}/{{method}}/{{target}}/{{group}}/shard-{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{model}}/{{method}}/{{target}}/{{group}}/shard-{{shard}}.tsv"
    params:
        repo=str(REPO),
        settings=lambda wildcards: json.dumps(method_settings(wildcards.method, wildcards.model), sort_keys=True),
        data_dir=job_data_dir,
        val_dir=EVAL["val_dir"],
        shard_size=EVAL["shard_size"],
        seed=EVAL["seed"],
        batch_size=EVAL["batch_size"],
        map_store=os.path.abspath(MAP_STORE),
        device=DEVICE,
    threads: threads("evaluate")
    resources:
        **resources("evaluate"),
    priority: NOTEBOOK_PRIORITY["02"]  # short jobs that notebooks 01 and 02 wait for: first
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} python -m lib.evaluation"
        " --model {wildcards.model:q} --method {wildcards.method:q} --settings {params.settings:q}"
        " --target {wildcards.target} --group {wildcards.group} --shard {wildcards.shard}"
        " --shard-size {params.shard_size} --seed {params.seed} --data-dir {params.data_dir:q}"
        " --val-dir {params.val_dir:q} --map-store {params.map_store:q} --device {params.device:q}"
        " --batch-size {params.batch_size} --out {output:q} > {log:q} 2>&1"
