# The compendium's pipeline (layout of the snakemake-workflow template: rules in workflow/rules/*.smk,
# the config schema in workflow/schemas/, profiles in profiles/).
#
#   snakemake                                   default profile (profiles/default: every core; config/config.yaml)
#   snakemake --configfile config/paper.yaml    paper profile (ResNet-50, your ILSVRC2012, GPU)
#   snakemake --profile profiles/full           every method on all 1300 images, every metric (config/full.yaml)
#   snakemake --profile profiles/slurm          the same on a SLURM cluster
#   snakemake -n / --dag / --report report.zip  what would run and why / the graph / every figure and table
#
# Jobs: `evaluate` computes one shard of per-image metric rows (model x method x target rule x metric
# group x shard; lib.evaluation), the trainers write checkpoints, one papermill job per notebook reads the
# shards it needs (config/outputs.yaml `reads:`) and writes its figures and tables (config/outputs.yaml),
# `claims_scorecard` and `stats_calibration` write the files under figures/ that no notebook writes.
#
# Interrupted runs lose nothing that was finished: outputs are only the files a rule writes (never a whole
# folder), written under a temporary name and renamed; nothing is temp() or shadowed; the map store and the
# trainers' partial checkpoints are not outputs, so Snakemake never deletes them. A killed run resumes with
# the same command: finished shards are kept, the interrupted one reruns (tests/test_pipeline_run.py).

from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/notebooks.smk"
include: "workflow/rules/summary.smk"


rule all:
    """The default target: every notebook's figures and tables and the files under figures/ no notebook
    writes; with evaluation.full (config/full.yaml), every evaluation shard and their summary instead."""
    input:
        ALL_TARGETS,
    default_target: True
