"""The files each notebook writes: one list (``config/outputs.yaml``) for the Snakefile, the tests
and the notebooks.

``declared("03")`` gives notebook 03's file names (tables, then figures); :func:`check_outputs`,
the last cell of every notebook, fails when the output folder misses a declared file or holds one
that is not declared, so no output can go stale unseen.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

__all__ = ["OUTPUTS_FILE", "notebooks", "declared", "reads", "pipeline_outputs", "check_outputs"]

OUTPUTS_FILE = Path(__file__).resolve().parent.parent / "config" / "outputs.yaml"


@lru_cache(maxsize=1)
def _outputs() -> dict:
    with open(OUTPUTS_FILE) as f:
        return {str(k): v for k, v in yaml.safe_load(f).items()}


def notebooks() -> dict[str, str]:
    """``{"01": "01_attention_map_gradcam", ...}``: each notebook's number and name."""
    return {k: v["notebook"] for k, v in _outputs().items() if "notebook" in v}


def reads(notebook: str) -> list[dict]:
    """The evaluation rows notebook ``notebook`` reads: one entry per image count, each with ``methods``,
    ``target``, ``groups`` and ``images`` (the name of its image-count parameter), optionally ``within`` (at most
    the images of another count) and ``model`` (the parameter naming the model, when not the notebook's ``model``);
    ``[]`` when it reads none.
    ``reads:`` in config/outputs.yaml is one such mapping or a list of them."""
    declared(notebook)  # raises for an unknown notebook
    entry = _outputs()[str(notebook)].get("reads") or []
    return [dict(e) for e in (entry if isinstance(entry, list) else [entry])]


def pipeline_outputs() -> list[str]:
    """The files under figures/ that no notebook writes (the scorecard, the statistics' calibration)."""
    return list((_outputs().get("pipeline") or {}).get("tables") or [])


def declared(notebook: str, kind: str | None = None) -> list[str]:
    """The file names notebook ``notebook`` ("01".."05") writes; ``kind``: "tables" or "figures" only."""
    entry = _outputs().get(str(notebook))
    if entry is None or "notebook" not in entry:
        raise ValueError(f"no notebook {notebook!r} in {OUTPUTS_FILE.name}. Fix: use one of {sorted(notebooks())}.")
    kinds = ("tables", "figures") if kind is None else (kind,)
    return [name for k in kinds for name in entry.get(k) or []]


def check_outputs(notebook: str, out: str | Path, since: float | None = None) -> list[str]:
    """The declared files of ``notebook``; raises when one is missing from ``out`` (or older than
    ``since``, a ``time.time()`` taken when the run started) or when ``out`` holds a .csv or .png
    that is not declared (written since ``since``, when given: older leftovers are not this run's)."""
    out = Path(out)
    names = declared(notebook)
    missing = [n for n in names if not (out / n).is_file() or (since is not None and (out / n).stat().st_mtime < since)]
    extra = sorted(p.name for p in out.iterdir() if p.is_file() and p.suffix in (".csv", ".png")
                   and p.name not in names and (since is None or p.stat().st_mtime >= since))
    if missing or extra:
        raise RuntimeError(f"notebook {notebook} outputs in {out} differ from {OUTPUTS_FILE.name}: missing {missing}, "
                           f"undeclared {extra}. Fix: write the missing files, or declare the new ones there.")
    return names
