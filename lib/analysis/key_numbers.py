"""Key numbers of a notebook's quick-default run, checked against stored values with stated tolerances.

nbval re-executes every notebook with its quick default parameters (``make test``), and its
sanitizer masks floats in printed output (timings, versions). So that a changed table still fails,
each notebook's last cell passes its key numbers (means of its tables, per method) to
:func:`check_key_numbers`: with the quick defaults on a CPU they must equal the values stored in
``notebooks/expected/NN.json`` within the tolerance stored there (``rtol`` relative, ``atol``
absolute: ``|ours - stored| <= atol + rtol * |stored|``, as ``numpy.isclose``), or the cell raises
and nbval fails. ``CAM_UPDATE_KEY_NUMBERS=1`` rewrites the file from the run instead (after a
deliberate change; the diff shows what moved). Other parameters or a GPU skip the check (said).

Default tolerances: ``rtol = 1e-3`` (a 1 % change fails; floating-point differences between CPUs
of the same kind stay far below), ``atol = 1e-6``. Numbers that depend on training (an attention
trained in the run) get their own, wider tolerance in the file, with the reason.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping

__all__ = ["EXPECTED_DIR", "RTOL", "ATOL", "check_key_numbers"]

EXPECTED_DIR = Path(__file__).resolve().parents[2] / "notebooks" / "expected"
RTOL, ATOL = 1e-3, 1e-6


def _flat(values: Mapping, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat(value, name + " / "))
        else:
            flat[name] = float(value)
    return flat


def check_key_numbers(notebook: str, values: Mapping, enabled: bool, wide: Mapping[str, tuple[float, str]] | None = None,
                      expected_dir: Path = EXPECTED_DIR) -> str:
    """Compare ``values`` (``{name: number}``, nested dicts allowed) with ``expected_dir/<notebook>.json``.

    Args:
        notebook: "01".."05".
        enabled: whether this run uses the quick defaults on a CPU (else nothing is checked).
        wide: ``{name prefix: (rtol, reason)}``: a wider tolerance for numbers whose name starts so
            (written into the file when it is updated).
    Returns a one-line summary; raises ``AssertionError`` naming every number out of tolerance, and
    on a missing or extra name."""
    path = expected_dir / f"{notebook}.json"
    ours = _flat(values)
    bad = [k for k, v in ours.items() if not math.isfinite(v)]
    if bad:
        raise AssertionError(f"key numbers {bad} are not finite")
    if not enabled:
        return "key numbers not checked: not the quick defaults on a CPU"
    if os.environ.get("CAM_UPDATE_KEY_NUMBERS") == "1" or not path.exists():
        tolerances = {"rtol": RTOL, "atol": ATOL,
                      "wide": {k: {"rtol": r, "reason": why} for k, (r, why) in (wide or {}).items()}}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"tolerances": tolerances, "values": ours}, indent=1, sort_keys=True) + "\n")
        return f"key numbers written to {path.name} ({len(ours)} numbers)"
    stored = json.loads(path.read_text())
    tol, expected = stored["tolerances"], stored["values"]
    problems = [f"{k}: missing from this run" for k in expected if k not in ours]
    problems += [f"{k}: not in {path.name}" for k in ours if k not in expected]
    for name, value in ours.items():
        if name not in expected:
            continue
        rtol = next((w["rtol"] for prefix, w in tol.get("wide", {}).items() if name.startswith(prefix)), tol["rtol"])
        want = expected[name]
        if abs(value - want) > tol["atol"] + rtol * abs(want):
            problems.append(f"{name}: {value:.6g}, stored {want:.6g} (rtol {rtol:g})")
    if problems:
        raise AssertionError(f"{len(problems)} key numbers differ from notebooks/expected/{path.name}:\n  "
                             + "\n  ".join(problems) + "\nFix: find what changed them; after a deliberate change rerun "
                             "with CAM_UPDATE_KEY_NUMBERS=1 and commit the file.")
    return f"{len(ours)} key numbers equal notebooks/expected/{path.name} within its tolerances"
