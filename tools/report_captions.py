"""Captions of `snakemake --report`: one reStructuredText file per declared output, from the claims registry.

    python -m tools.report_captions           # rewrites workflow/report/captions/
    python -m tools.report_captions --check   # fails when a caption is missing or out of date (tests)

A notebook's file is captioned with its paper (the registry's citation), the paper items (tables,
figures, sections) whose claims it is evidence for, and how many claims read it; a file no claim reads
says so. The files under figures/ that no notebook writes have fixed captions below.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from lib.analysis.claims import CLAIMS_DIR, load_claims
from lib.outputs import declared, notebooks

ROOT = Path(__file__).resolve().parent.parent
CAPTIONS = ROOT / "workflow" / "report" / "captions"
PIPELINE = {
    "claims_scorecard.csv": "Every claim of the five papers (lib/analysis/claims) with the verdict computed from the "
                            "notebooks' per-image tables: agrees, disagrees, not resolved (with the n that would resolve "
                            "it), too few, not comparable, not reproducible here.",
    "stats_calibration.csv": "How often the decision rules of lib.analysis.stats call a difference resolved, by "
                             "simulation: the error under true nulls and the power under effects, per n and metric shape.",
    "evaluation_summary.csv": "The full profile: every method's per-image metrics (lib.evaluation.suite) summarised "
                              "per (model, method, target rule, metric, protocol): n, mean and its t interval.",
    "evaluation_cost.csv": "The full profile's measured cost per shard (the evaluate rule's benchmark files) and the "
                           "projected CPU-hours and GPU time of every method on the whole sample.",
}


def citations() -> dict[str, str]:
    """{notebook name: the paper's citation} from the registry files."""
    out = {}
    for path in sorted(Path(CLAIMS_DIR).glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        out[doc["notebook"]] = " ".join(str(doc["citation"]).split())
    return out


def captions() -> dict[Path, str]:
    """{caption file: text} for every declared output."""
    cites = citations()
    reading = defaultdict(list)
    for claim in load_claims():
        for output in claim.outputs:
            reading[output].append(claim)
    texts = {}
    for nb, name in notebooks().items():
        for file in declared(nb):
            claims = reading.get(f"figures/{nb}/{file}", [])
            items = sorted({c.item for c in claims})
            lines = [f"``{file}``, notebook {name}; paper: {cites.get(name, 'see the notebook')}", ""]
            if claims:
                lines.append(f"Evidence for {len(claims)} claim(s) of the registry (lib/analysis/claims), on "
                             f"{', '.join(items)}; their verdicts are in ``claims.csv`` of this notebook and in "
                             "``claims_scorecard.csv``.")
            else:
                lines.append("No claim of the registry reads this file: it shows the notebook's own analysis.")
            texts[CAPTIONS / nb / f"{file}.rst"] = "\n".join(lines) + "\n"
    for file, text in PIPELINE.items():
        texts[CAPTIONS / "pipeline" / f"{file}.rst"] = f"``{file}``: {text}\n"
    return texts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    texts = captions()
    stale = [p for p, t in texts.items() if not p.is_file() or p.read_text() != t]
    extra = sorted(set(CAPTIONS.rglob("*.rst")) - set(texts)) if CAPTIONS.is_dir() else []
    if args.check:
        if stale or extra:
            print(f"stale captions: {[str(p.relative_to(ROOT)) for p in stale]}, extra: {extra}. "
                  "Fix: python -m tools.report_captions", file=sys.stderr)
            return 1
        return 0
    for path in extra:
        path.unlink()
    for path, text in texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"{len(texts)} captions in {CAPTIONS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
