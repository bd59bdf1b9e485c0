"""Generate the conda files from the lock: ``environment.yml`` and ``config/envs/compendium.yml``.

    python tools/sync_envs.py           # rewrite both (``make envs``; ``make lock`` runs it too)
    python tools/sync_envs.py --check   # exit 1 when either differs from what the lock gives

The one dependency list is ``pyproject.toml``; ``make lock`` resolves it into ``requirements/lock.txt``
(exact versions), and both conda files take their pip section from that lock, so no version is
copied by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"
PYTHON = "3.11"  # the CPython the lock is resolved for (see the Makefile's `lock` target)

HEADERS = {
    "environment.yml": """\
# Conda alternative to `make install` (which uses python3 -m venv):
#   conda env create -f environment.yml && conda activate cam-compendium
# run from the repository root (the last pip line installs this checkout, editable).
# GENERATED from requirements/lock.txt by tools/sync_envs.py (`make envs`): do not edit.
name: cam-compendium
""",
    "config/envs/compendium.yml": """\
# The software environment of the pipeline's jobs under `snakemake --use-conda`.
# (`make pipeline` does not use conda: it runs the jobs in .venv.) The jobs import `lib` from the
# checkout (the Snakefile puts the repository root on PYTHONPATH), so this holds only the locked
# dependencies.
# GENERATED from requirements/lock.txt by tools/sync_envs.py (`make envs`): do not edit.
""",
}


def locked_requirements(lock: Path = LOCK) -> list[str]:
    """``name==version`` lines of the lock, without comments."""
    pins = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            if not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[A-Za-z0-9_.+!\-]+", line):
                raise ValueError(f"{lock}: not an exact pin: {line!r}")
            pins.append(line)
    return pins


def render(name: str, pins: list[str]) -> str:
    lines = [HEADERS[name].rstrip("\n"), "channels:", "  - conda-forge", "dependencies:",
             f"  - python={PYTHON}", "  - pip", "  - pip:"]
    lines += [f"      - {pin}" for pin in pins]
    if name == "environment.yml":
        lines.append("      - -e .")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is stale")
    args = parser.parse_args(argv)
    pins = locked_requirements()
    stale = []
    for name in HEADERS:
        path = REPO / name
        text = render(name, pins)
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run `make envs`", file=sys.stderr)
        return 1
    print(("rewrote " + ", ".join(stale)) if stale else "conda files match the lock")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
