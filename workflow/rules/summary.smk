# The files under figures/ that no notebook writes, and the full profile's summary of every shard.

PIPELINE_TABLES = [f"{FIGURES}/{name}" for name in pipeline_outputs()]
PIPELINE_CAPTIONS = REPO / "workflow" / "report" / "captions" / "pipeline"


rule claims_scorecard:
    """Verdicts on every claim of the registry (lib/analysis/claims) from the notebooks' per-image tables."""
    input:
        NOTEBOOK_OUTPUTS,
        registry=sorted(str(p.relative_to(REPO)) for p in (REPO / "lib" / "analysis" / "claims").glob("*.yaml")),
        code=["tools/claims_scorecard.py"] + sources("analysis"),
    output:
        report(f"{FIGURES}/claims_scorecard.csv", caption=str(PIPELINE_CAPTIONS / "claims_scorecard.csv.rst"),
               category="Claims", labels={"file": "claims_scorecard.csv"}),
    log:
        f"{RESULTS}/logs/claims_scorecard.log",
    params:
        repo=str(REPO),
        figures=os.path.abspath(FIGURES),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} python -m tools.claims_scorecard --csv-only --figures {params.figures:q} > {log:q} 2>&1"


rule stats_calibration:
    """How often the decision rules of lib.analysis.stats call a difference resolved, by simulation."""
    input:
        code=["tools/stats_calibration.py", "lib/analysis/stats.py", "lib/analysis/calibration.py"],
    output:
        report(f"{FIGURES}/stats_calibration.csv", caption=str(PIPELINE_CAPTIONS / "stats_calibration.csv.rst"),
               category="Claims", labels={"file": "stats_calibration.csv"}),
    log:
        f"{RESULTS}/logs/stats_calibration.log",
    benchmark:
        f"{RESULTS}/benchmarks/stats_calibration.tsv"
    params:
        repo=str(REPO),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} python -m tools.stats_calibration --out {output:q} > {log:q} 2>&1"


FULL_SHARDS = [
    shard_file(model, method, target, group, k)
    for model in EVAL["models"]
    for method in (EVAL["full_methods"] or list(EVAL["methods"]))
    for target in EVAL["targets"]
    for group in EVAL["groups"]
    for k in shards_for(int(EVAL["n_images"]), EVAL["shard_size"], n_images(EVAL["val_dir"]))
] if EVAL["full"] else []


rule evaluation_summary:
    """The full profile's tables: every (method, target, metric, protocol) summarised over its images (n, mean,
    interval), and the measured cost per shard with the projected CPU-hours and GPU time of the whole run."""
    input:
        FULL_SHARDS,
        code=["tools/evaluation_summary.py"] + sources("analysis/tables.py", "analysis/stats.py", "evaluation"),
    output:
        summary=report(f"{FIGURES}/evaluation_summary.csv", caption=str(PIPELINE_CAPTIONS / "evaluation_summary.csv.rst"),
                       category="Evaluation", labels={"file": "evaluation_summary.csv"}),
        cost=report(f"{FIGURES}/evaluation_cost.csv", caption=str(PIPELINE_CAPTIONS / "evaluation_cost.csv.rst"),
                    category="Evaluation", labels={"file": "evaluation_cost.csv"}),
    log:
        f"{RESULTS}/logs/evaluation_summary.log",
    params:
        repo=str(REPO),
        eval_dir=os.path.abspath(EVAL_DIR),
        benchmarks=os.path.abspath(f"{RESULTS}/benchmarks/evaluate"),
        total=n_images(EVAL["val_dir"]) or 0,
        shard_size=EVAL["shard_size"],
        eval_threads=threads("evaluate"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        CONDA_ENV
    shell:
        "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} python -m tools.evaluation_summary --eval-dir {params.eval_dir:q}"
        " --benchmarks {params.benchmarks:q} --total-images {params.total} --shard-size {params.shard_size}"
        " --threads {params.eval_threads}"
        " --summary {output.summary:q} --cost {output.cost:q} > {log:q} 2>&1"


ALL_TARGETS = (FULL_SHARDS + [f"{FIGURES}/evaluation_summary.csv", f"{FIGURES}/evaluation_cost.csv"]
               if EVAL["full"] else NOTEBOOK_OUTPUTS + PIPELINE_TABLES)
