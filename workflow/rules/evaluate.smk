# One shard of per-image metric rows: model x method x target rule x metric group x shard (lib.evaluation).
# A "shard" wildcard is shard-NNNN, or head-NNNN: the first NNNN images of the seeded order, for a notebook that
# needs fewer images of a slow method than a shard holds (notebook 02's Score-CAM and RISE).


wildcard_constraints:
    model=r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*?",
    method=r"[a-z0-9+\-]+",
    target=r"predicted|label",
    group="|".join(GROUPS),  # lib.evaluation.GROUPS
    shard=r"(?:shard|head)-\d{4}",
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
    wildcard_constraints:
        shard=r"shard-\d{4}",
    log:
        f"{RESULTS}/logs/evaluate/{{model}}/{{method}}/{{target}}/{{group}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{model}}/{{method}}/{{target}}/{{group}}/{{shard}}.tsv"
    params:
        repo=str(REPO),
        settings=lambda wildcards: json.dumps(method_settings(wildcards.method, wildcards.model), sort_keys=True),
        companions=lambda wildcards: json.dumps(companions(wildcards), sort_keys=True),
        data_dir=job_data_dir,
        val_dir=EVAL["val_dir"],
        part=lambda wildcards: part_arguments(wildcards.shard),
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
        " --companions {params.companions:q}"
        " --target {wildcards.target} --group {wildcards.group} {params.part}"
        " --seed {params.seed} --data-dir {params.data_dir:q}"
        " --val-dir {params.val_dir:q} --map-store {params.map_store:q} --device {params.device:q}"
        " --batch-size {params.batch_size} --out {output:q} > {log:q} 2>&1"


# A head: the same job on the first NNNN images (notebook 02's Score-CAM and RISE on n_slow images). RISE's is the
# longest one-thread job of the default pipeline (8 images x 4001 passes), so the slow methods' heads start before
# everything else; then notebook 03's (its chain select_sacam -> SA-CAM's head -> notebook 03 is the next longest);
# the other heads (notebook 04's UCAG variants, many short jobs) get notebook 04's priority and fill the gaps; the
# UCAG variants of one crop geometry are a family: ucag-gradcam's first job makes all their maps (--companions,
# common.smk map_family), the others wait for it.
use rule evaluate as evaluate_head with:
    wildcard_constraints:
        shard=r"head-\d{4}",
        method=SLOW_HEADS,
    priority: HEAD_PRIORITY


use rule evaluate as evaluate_sacam_head with:
    wildcard_constraints:
        shard=r"head-\d{4}",
        method=SACAM_HEADS,
    priority: SACAM_PRIORITY


use rule evaluate as evaluate_notebook_head with:
    wildcard_constraints:
        shard=r"head-\d{4}",
        method=rf"(?!(?:{SLOW_HEADS}|{SACAM_HEADS})/)[a-z0-9+\-]+",  # any other key ('/' follows the key in every path)
    priority: NOTEBOOK_PRIORITY["04"]
