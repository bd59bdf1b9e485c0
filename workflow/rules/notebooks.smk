# One papermill job per notebook (config/outputs.yaml lists them): the notebook, the library, its data, the
# checkpoints it loads and the evaluation shards it reads as inputs; every file it writes (config/outputs.yaml)
# as an output, in `snakemake --report` with its caption (workflow/report/captions/, from the claims registry).
# Parameters: the notebook's `parameters` cell names them; each takes the value of the config key of the same
# name in the notebook's section (`model` -> `model_name`), or the pipeline's (data_dir, device, folders).

import ast

REPORT_CAPTIONS = REPO / "workflow" / "report" / "captions"


def notebook_parameters(name):
    """The names assigned in the cell tagged `parameters` of notebooks/<name>.ipynb, in order."""
    nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            body = ast.parse("".join(cell["source"])).body
            return [t.id for node in body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
    raise ValueError(f"notebooks/{name}.ipynb has no cell tagged 'parameters'. Fix: tag its parameter cell.")


def notebook_inputs(nb):
    """What a notebook loads besides the library and the data: trained checkpoints, SA-CAM's selection grid."""
    if nb == "01":
        return {"checkpoints": am_checkpoints(NB01["model"])}
    if nb == "02":
        return {"checkpoints": lcam_checkpoints(NB02["model"])}
    if nb == "03":
        return {"selection": selection_file(NB03["model"], NB03["target_layer_gpu" if ON_GPU else "target_layer_cpu"])}
    return {}


def notebook_papermill(nb):
    """The papermill arguments of notebook nb's rule (a function of the job's input and output)."""

    def arguments(wildcards, input, output):
        section = config[f"notebook{nb}"]
        values = {("model_name" if key == "model" else key): value for key, value in section.items()}
        values.update(data_dir=data_root(), device=DEVICE, cache_dir=os.path.abspath(MAP_STORE),
                      eval_dir=os.path.abspath(EVAL_DIR), shard_size=EVAL["shard_size"],
                      output_dir=os.path.abspath(os.path.dirname(output.tables[0])))
        if nb == "01":
            values["checkpoint_dir"] = os.path.abspath(os.path.dirname(input.checkpoints[0]))
        if nb == "02":
            values["checkpoint_dir"] = os.path.abspath(os.path.dirname(input.checkpoints[0]))
        if nb == "03":
            values["selection_grid"] = os.path.abspath(input.selection)
        return papermill_params({k: values[k] for k in notebook_parameters(NOTEBOOKS[nb]) if k in values})

    return arguments


def reported(nb, kind):
    """Notebook nb's declared files of a kind, each in the report with its caption."""
    category = f"{nb} {NOTEBOOKS[nb][3:].replace('_', ' ')}"
    return [report(f"{FIGURES}/{nb}/{name}", caption=str(REPORT_CAPTIONS / nb / f"{name}.rst"), category=category,
                   subcategory=kind, labels={"notebook": nb, "file": name})
            for name in declared(nb, kind)]


NOTEBOOK_OUTPUTS = []
for nb, name in NOTEBOOKS.items():
    NOTEBOOK_OUTPUTS += [f"{FIGURES}/{nb}/{file}" for file in declared(nb)] + [f"{RESULTS}/notebooks/{name}.ipynb"]

    rule:
        name:
            f"notebook_{nb}"
        input:
            notebook=f"notebooks/{name}.ipynb",
            lib=lib_sources(),
            data=data_inputs(config[f"notebook{nb}"]["val_dir"]),
            rows=notebook_rows(nb),
            **notebook_inputs(nb),
        output:
            tables=reported(nb, "tables"),
            figures=reported(nb, "figures"),
            notebook=f"{RESULTS}/notebooks/{name}.ipynb",
        log:
            f"{RESULTS}/logs/notebook_{nb}.log",
        benchmark:
            f"{RESULTS}/benchmarks/notebook_{nb}.tsv"
        params:
            repo=str(REPO),
            # papermill runs the notebook in notebooks/ (as Jupyter and nbval do); paths are absolute.
            cwd=str(REPO / "notebooks"),
            papermill=notebook_papermill(nb),
        threads: threads("notebook")
        resources:
            **resources("notebook"),
        priority: NOTEBOOK_PRIORITY.get(nb, 0)
        conda:
            CONDA_ENV
        shell:
            "PYTHONPATH={params.repo:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} papermill {input.notebook:q} {output.notebook:q}"
            " --cwd {params.cwd:q} --kernel python3 --log-output --no-progress-bar"
            " {params.papermill} > {log:q} 2>&1"
