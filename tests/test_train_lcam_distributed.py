"""Data-parallel L-CAM training (lib.train_lcam, "Data-parallel training"): two CPU processes equal one.

The two-process runs are real ``torchrun`` launches (``python -m torch.distributed.run --standalone
--nproc_per_node 2 -m test_train_lcam_distributed``: gloo backend, one thread per process, and a
rendezvous on a free port the standalone launcher binds itself) of this file, whose ``__main__``
part is the worker: it trains the tiny classifier of ``test_lcam`` on a tiny folder, either through
:func:`lib.train_lcam.train_lcam` inside :func:`lib.train_lcam.distributed` (several runs in one
launch) or through the command line :func:`lib.train_lcam.main` (``load_model`` patched to the tiny
classifier).  One process with the same effective batch is the reference.

Tolerance: 2 processes against 1, weights and history within ``RTOL = 1e-6`` relative (plus
``ATOL = 1e-7`` for values near 0); the ranks sum their shards' gradients in another order than one
process sums the batch's, nothing else differs.  A resumed 2-process run equals an uninterrupted
one exactly.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lib.cams.activation import forward_activations
from lib.cams.lcam import LCAMAttention
from lib.data import ImageFolder
from lib.train_lcam import BatchShard, LCAMConfig, lcam_backward, lcam_step, make_attention, train_lcam
from lib.transforms import Preprocess
from test_lcam import _folder, tiny_model

REPO = Path(__file__).resolve().parents[1]
PREPROCESS = Preprocess(6, 4, (0.5,) * 3, (0.5,) * 3)  # test_lcam's tiny folder and model
RTOL, ATOL = 1e-6, 1e-7
VARIANTS = [("fm", "batch"), ("fm", "own"), ("img", "batch"), ("img", "own")]
LAUNCH_TIMEOUT = 180


def _config(variant: str, mode: str, **kw) -> LCAMConfig:
    """2 epochs of 2 steps on 7 images (batches of 4 and 3: the short one splits 2 + 1 between the ranks)."""
    return LCAMConfig(**{"model": "tiny", "variant": variant, "loss_maps": mode, "epochs": 2, "batch_size": 4,
                         "lr": 0.5, "init": "random", "seed": 3, **kw})


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Two worker processes of this file under torchrun; fails the test with their output on an error."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", Path(__file__).stem, *args]  # run as a module (-m), as the pipeline runs lib.train_lcam
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _close(a: dict, b: dict) -> tuple[float, float]:
    """Assert two state dicts equal within RTOL/ATOL; return the largest absolute difference and the largest
    difference relative to the tensor's largest value."""
    assert a.keys() == b.keys()
    worst_abs = worst_rel = 0.0
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=RTOL, atol=ATOL)
        diff = float((a[k] - b[k]).abs().max())
        worst_abs, worst_rel = max(worst_abs, diff), max(worst_rel, diff / float(b[k].abs().max()))
    return worst_abs, worst_rel


def _close_history(a: list[dict], b: list[dict]) -> None:
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["images"] == rb["images"] and ra["lr"] == rb["lr"]
        for k in ("loss", "ce", "area", "tv", "keep"):
            assert ra[k] == pytest.approx(rb[k], rel=RTOL, abs=ATOL), (k, ra, rb)


# --- the split of the loss, in one process ----------------------------------------------------------

@pytest.mark.parametrize("variant,mode,ce_only,chunk", [("img", "batch", False, None), ("img", "own", True, 2),
                                                        ("fm", "batch", False, 2), ("fm", "own", False, None)])
@pytest.mark.parametrize("sizes", [(3, 2), (1, 2, 2), (5, 0)], ids=["3+2", "1+2+2", "5+empty"])
def test_the_shards_terms_and_gradients_add_up_to_the_batchs(variant, mode, ce_only, chunk, sizes):
    """Each shard's terms are its share of the batch's (global normalisers, the batch's labels); their sum and
    the sum of their gradients equal one process's on the whole batch (float rounding aside)."""
    model = tiny_model()
    torch.manual_seed(0)
    att = LCAMAttention(2, 3)
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    config = LCAMConfig(model="tiny", variant=variant, loss_maps=mode, ce_only=ce_only)
    whole = lcam_backward(model, att, x, config, chunk=chunk)
    grads = [p.grad.clone() for p in att.parameters()]
    att.zero_grad(set_to_none=True)

    labels = forward_activations(model, x, "predicted", model.target_layer)[2][:, 0]
    summed = {k: torch.zeros(()) for k in whole}
    for rank in range(len(sizes)):
        start = sum(sizes[:rank])
        shard = BatchShard(sizes, rank, gather=lambda t, labels=labels: labels)
        terms = lcam_backward(model, att, x[start : start + sizes[rank]], config, chunk=chunk, shard=shard)
        for k in summed:
            summed[k] += terms[k]
    for k in whole:
        torch.testing.assert_close(summed[k], whole[k], rtol=1e-6, atol=1e-7)
    for p, g in zip(att.parameters(), grads):  # the shards' gradients accumulated
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-7)


def test_a_shard_of_batch_maps_sees_every_label_of_the_batch():
    model = tiny_model()
    att = LCAMAttention.from_classifier(model)
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2, 1, 2])
    shard = BatchShard((2, 2), 1, gather=lambda t: labels)
    assert shard.batch == 4 and shard.start == 2
    config = LCAMConfig(model="tiny", loss_maps="batch")
    with pytest.raises(ValueError, match="holds 2 images"):
        shard.batch_targets(labels)
    terms = lcam_step(model, att, x[2:], config, shard=shard)
    assert set(terms) == {"loss", "ce", "area", "tv", "keep"}


@pytest.mark.parametrize("variant", ["img", "fm"])
@pytest.mark.parametrize("amp,tol", [(torch.bfloat16, 2e-2), (torch.float16, 2e-3)], ids=["bf16", "fp16"])
def test_mixed_precision_runs_the_classifier_in_autocast_and_keeps_the_loss_close(variant, amp, tol):
    """The autocast paths of a step (the trainer enables them on CUDA only; CPU autocast runs the same code): terms
    and the gradients (backpropagated x grad_scale, as with a loss scaler) near float32's, the loss still float32."""
    model = tiny_model()
    torch.manual_seed(0)
    att = LCAMAttention(2, 3)
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    config = LCAMConfig(model="tiny", variant=variant)
    ref = lcam_backward(model, att, x, config)
    grads = [p.grad.clone() for p in att.parameters()]
    for chunk in (None, 2):
        att.zero_grad(set_to_none=True)
        terms = lcam_backward(model, att, x, config, chunk=chunk, amp=amp, grad_scale=8.0)
        assert all(v.dtype == torch.float32 for v in terms.values())
        for k in ref:
            torch.testing.assert_close(terms[k], ref[k], rtol=tol, atol=tol)
        for p, g in zip(att.parameters(), grads):
            torch.testing.assert_close(p.grad / 8.0, g, rtol=tol, atol=tol * float(g.abs().max()))


def test_amp_is_for_cuda_only():
    from lib.train_lcam import _amp_dtype

    cpu = torch.device("cpu")
    assert all(_amp_dtype(a, cpu) is None for a in (False, "off", True, "auto", "bf16", "fp16"))
    with pytest.raises(ValueError, match="Unknown amp 'fp8'"):
        _amp_dtype("fp8", cpu)


def test_the_batch_must_split_evenly_between_the_processes(monkeypatch):
    import lib.train_lcam as trainer

    monkeypatch.setattr(trainer, "_rank_world", lambda: (0, 3))
    with pytest.raises(ValueError, match="batch_size 4 is not a multiple of the 3 processes"):
        train_lcam(tiny_model(), None, _config("img", "batch"), progress=False)


# --- two processes under torchrun --------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One torchrun launch: the four variants x loss maps, an empty-shard run (5 images: the last batch of 1
    leaves rank 1 nothing; ce_only, chunked) and the first epoch of a run to resume."""
    tmp = tmp_path_factory.mktemp("ddp")
    data7, data5 = _folder(tmp / "d7" / "train", n=7), _folder(tmp / "d5" / "train", n=5)
    runs = {f"{v}-{m}": {"root": str(data7.root), "config": vars(_config(v, m))} for v, m in VARIANTS}
    runs["empty-shard"] = {"root": str(data5.root), "chunk": 1,
                           "config": vars(_config("img", "batch", ce_only=True))}
    runs["first-epoch"] = {"root": str(data7.root), "until_epoch": 1, "config": vars(_config("img", "batch"))}
    for name, run in runs.items():
        run["out"] = str(tmp / "out" / f"{name}.pt")
    spec = tmp / "spec.json"
    spec.write_text(json.dumps(list(runs.values())))
    start = time.perf_counter()
    _torchrun("runs", str(spec), cwd=tmp)
    return {"tmp": tmp, "runs": runs, "data7": data7, "data5": data5, "seconds": time.perf_counter() - start}


def _state(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("name", [f"{v}-{m}" for v, m in VARIANTS] + ["empty-shard"])
def test_two_processes_train_the_weights_of_one(two_processes, name):
    run = two_processes["runs"][name]
    config = LCAMConfig(**run["config"])
    data = ImageFolder(run["root"], PREPROCESS)
    one, history = train_lcam(tiny_model(), data, config, progress=False, chunk=run.get("chunk"))
    state = _state(run["out"])
    assert state["world_size"] == 2 and state["epoch"] == 2 and state["config"] == run["config"]
    worst_abs, worst_rel = _close(state["state_dict"], one.state_dict())
    _close_history(state["history"], history)  # the all-reduced means over every image, as one process logs them
    print(f"{name}: weights, 2 processes vs 1: largest difference {worst_abs:.2e} ({worst_rel:.2e} of the largest "
          "weight)")
    assert not torch.equal(state["state_dict"]["conv.weight"], make_attention(tiny_model(), config).conv.weight)


def test_only_rank_0_writes_checkpoints(two_processes):
    out = two_processes["tmp"] / "out"
    assert not (out / "saves-rank1.txt").exists()
    saves = (out / "saves-rank0.txt").read_text().split()
    assert saves.count("img-batch.pt.partial") == 2 and saves.count("img-batch.pt") == 1
    assert saves.count("first-epoch.pt.partial") == 1 and "first-epoch.pt" not in saves
    assert not list(out.glob("*.tmp")) and not (out / "img-batch.pt.partial").exists()


def test_a_stopped_two_process_run_resumes_through_the_command_line(two_processes):
    """The first epoch's partial (until_epoch=1) resumed by a second launch of the command line, as the
    pipeline's `torchrun ... -m lib.train_lcam`: the weights and history of the uninterrupted 2-process run."""
    runs, tmp = two_processes["runs"], two_processes["tmp"]
    partial = Path(runs["first-epoch"]["out"] + ".partial")
    assert partial.exists() and not Path(runs["first-epoch"]["out"]).exists()
    assert _state(partial)["epoch"] == 1
    config = runs["first-epoch"]["config"]
    argv = ["--model", "tiny", "--variant", config["variant"], "--loss-maps", config["loss_maps"],
            "--epochs", str(config["epochs"]), "--batch-size", str(config["batch_size"]), "--lr", str(config["lr"]),
            "--init", config["init"], "--seed", str(config["seed"]),
            "--data-dir", str(Path(runs["first-epoch"]["root"]).parent), "--train-dir", "train", "--device", "cpu",
            "--out", runs["first-epoch"]["out"]]
    proc = _torchrun("cli", *argv, cwd=tmp)
    assert "Resuming L-CAM-Img training" in proc.stderr and "data-parallel over 2 processes" in proc.stderr
    assert len(re.findall(r"INFO L-CAM-Img epoch 2/2: loss", proc.stderr)) == 1  # rank 0 alone logs
    resumed, straight = _state(runs["first-epoch"]["out"]), _state(runs["img-batch"]["out"])
    assert not partial.exists()
    for k in straight["state_dict"]:
        assert torch.equal(resumed["state_dict"][k], straight["state_dict"][k]), k
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(straight["history"])


def test_the_pipeline_launches_torchrun_when_notebook_02_asks_for_several_gpus(tmp_path):
    """rule train_lcam: `torchrun --standalone --nproc_per_node G -m lib.train_lcam` and gpu=G with train_gpus > 1;
    under the SLURM profile with train_nodes > 1, `srun ... torchrun --nnodes N` and the nodes as resources."""
    extra = tmp_path / "gpus.yaml"
    extra.write_text("notebook02:\n  train_gpus: 4\n")
    snakemake = Path(sys.executable).parent / "snakemake"
    base = [str(snakemake), "--dry-run", "--forceall", "--nolock", "--printshellcmds", "--cores", "1"]

    def dry(*args):
        proc = subprocess.run([*base, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    out = dry("--configfile", "config/config.yaml", str(extra), "--config", "device=cuda")
    blocks = [b for b in out.split("\n\n") if "rule train_lcam:" in b]
    assert blocks and all(re.search(r"resources:.*\bgpu=4\b", b) for b in blocks), blocks[:1]
    commands = [c for c in re.findall(r"^Shell command: (.+)$", out, flags=re.MULTILINE) if "lib.train_lcam" in c]
    assert commands and all("OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 4 -m lib.train_lcam --model" in c
                            for c in commands), commands

    extra.write_text("notebook02:\n  train_gpus: 4\n  train_nodes: 2\n")
    out = dry("--profile", "profiles/slurm", "--configfile", "config/config.yaml", "config/full.yaml", str(extra))
    blocks = [b for b in out.split("\n\n") if "rule train_lcam:" in b]
    assert blocks and all(re.search(r"\bnodes=2\b", b) and re.search(r"\btasks=2\b", b) and "mpi=srun" in b
                          and re.search(r"\bgpu=0\b", b) and "slurm_extra=--gpus-per-node=4 --ntasks-per-node=1" in b
                          for b in blocks), blocks[:1]
    commands = [c for c in re.findall(r"^Shell command: (.+)$", out, flags=re.MULTILINE) if "lib.train_lcam" in c]
    assert commands and all("srun --nodes 2 --ntasks 2 --ntasks-per-node 1 --gpus-per-node 4 torchrun --nnodes 2 "
                            "--nproc_per_node 4 --rdzv_backend c10d --rdzv_id $SLURM_JOB_ID --rdzv_endpoint $(" in c
                            and ":29500 -m lib.train_lcam --model" in c for c in commands), commands


# --- the worker (run by torchrun, one process per rank) ----------------------------------------------

def _worker(argv: list[str]) -> None:
    """``runs SPEC.json``: train_lcam for every run of the spec in one process group; ``cli ARGS``: lib.train_lcam's
    main(ARGS) with the tiny classifier.  Every checkpoint write is recorded in ``saves-rank<R>.txt``."""
    import lib.models
    import lib.train_lcam as trainer

    rank = int(os.environ["RANK"])
    write = trainer.atomic_save

    def recorded(obj, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / f"saves-rank{rank}.txt", "a") as f:
            f.write(path.name + "\n")
        write(obj, path)

    trainer.atomic_save = recorded
    if argv[0] == "cli":
        lib.models.load_model = lambda name, device="cpu", **kw: tiny_model().to(device)
        trainer.main(argv[1:])
        return
    runs = json.loads(Path(argv[1]).read_text())
    with trainer.distributed(torch.device("cpu")):
        for run in runs:
            trainer.train_lcam(tiny_model(), ImageFolder(run["root"], PREPROCESS), LCAMConfig(**run["config"]),
                               out=run["out"], progress=False, chunk=run.get("chunk"),
                               until_epoch=run.get("until_epoch"))


if __name__ == "__main__":
    _worker(sys.argv[1:])
