"""The registry of every paper claim: what each of the five papers states, and how it stands here.

One YAML file per paper in ``lib/analysis/claims/`` (``01_attention_map_gradcam.yaml`` ...), read
by :func:`load_claims`. Each file::

    paper: attention-map-guided-gradcam        # the paper's text: ../shared/papers/<paper>.txt
    notebook: 01_attention_map_gradcam         # the notebook that reproduces it
    citation: "Authors (year). Title. Venue."
    claims:
      - id: amgc-t3-ad-vgg16                    # unique across the registry: <paper prefix>-<item>-<what>
        item: Table 3                           # where in the paper: "Table 3", "Fig. 7", "Abstract",
                                                # "Conclusion", "Sec. 4.2"
        statement: >-                           # the claim in one sentence, as the paper makes it
          AM-Grad-CAM has a lower Average Drop than Grad-CAM on VGG-16 (ImageNet val, 2000 images).
        metric: average_drop                    # a key of METRICS, or null for a qualitative claim
        methods: [am_gradcam, gradcam]          # compared, first against the others (registry names)
        model: VGG-16                           # the paper's backbone for this claim
        paper_values: {am_gradcam: 32.1, gradcam: 46.6}   # as printed (units of the metric), or {}
        direction: better                       # better | worse | no_change | not_worse | size | describes
        margin: null                            # no_change / not_worse: the margin (metric units)
        kind: continuous                        # continuous | binary (per-image 0/1 outcomes)
        status: substituted                     # reproduced | substituted | not_reproducible
        substitution: >-                        # substituted: what stands in here and why
          EfficientNet-Lite0 for VGG-16 (offline weights); 128 validation images on a CPU.
        reason: null                            # not_reproducible: why, and what a user with the
                                                # data or compute would run
        outputs: [figures/01/table3_ad_ic.csv]  # the files of ours that hold the evidence, if any
        evidence:                               # optional: where our per-image values are, so that
          table: figures/01/per_image.csv       # the verdict is computed (lib.analysis.evidence)
          value: drop                           # the column of per-image values
          method_column: method                 # the column naming the method (default "method")
          methods: {am_gradcam: AM-Grad-CAM, gradcam: Grad-CAM}   # registry name -> label there
          where: {fraction: 1.0, binary: false} # rows to keep (column: value)
          unit_pattern: "^(.*):"                # optional: average rows of one independent unit
          trained: figures/02/attention_moved.csv   # optional: learned methods must be marked trained there
          exact: true                           # optional: a count without sampling error (forward passes)

``direction``: ``better``/``worse`` says how the *first* method compares with the others under
the metric's own sense (:data:`METRICS`: lower Average Drop is better); ``no_change`` claims that
they do not differ by more than ``margin``; ``not_worse`` claims that the first is not worse than the
second by more than ``margin`` ("maintained or increased": a one-sided non-inferiority claim); ``size`` claims a particular difference (the paper's
values give it); ``describes`` is a qualitative statement (a figure's maps look a certain way)
that no number can decide here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

__all__ = ["Metric", "METRICS", "Claim", "DIRECTIONS", "STATUSES", "KINDS", "CLAIMS_DIR", "load_claims",
           "claims_frame"]

CLAIMS_DIR = Path(__file__).resolve().parent / "claims"
DIRECTIONS = ("better", "worse", "no_change", "not_worse", "size", "describes")
STATUSES = ("reproduced", "substituted", "not_reproducible")
KINDS = ("continuous", "binary")


@dataclass(frozen=True)
class Metric:
    """A metric's sense, as Quantus declares it: whether a higher value means a better explanation."""

    name: str
    higher_is_better: bool | None  # None: neither (a property, e.g. a map's area)
    unit: str
    kind: str = "continuous"


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("average_drop", False, "% of the class score"),
    Metric("increase_in_confidence", True, "% of images", "binary"),
    Metric("average_gain", True, "% of the class score"),
    Metric("percentage_in", True, "%"),
    Metric("deletion_auc", False, "AUC of the class probability"),
    Metric("insertion_auc", True, "AUC of the class probability"),
    Metric("overall_auc", True, "insertion AUC - deletion AUC"),
    Metric("pointing_game", True, "% of hits", "binary"),
    Metric("energy_pointing_game", True, "% of the map's energy in the box"),
    Metric("density_positive", True, "class probability"),
    Metric("density_negative", False, "class probability"),
    Metric("adversarial_accuracy", True, "% of images"),
    Metric("fading_rate", False, "%"),  # SA-CAM Table 5: "the lower the fading rate, the better"
    Metric("randomisation_similarity", False, "rank correlation with the trained model's map"),
    Metric("map_area", None, "fraction of the image"),
    Metric("map_total_variation", None, "per pixel"),
    Metric("map_l2_norm", None, "L2 norm"),
    Metric("energy_per_class", True, "% of the map's energy on the class's half"),
    Metric("localisation_error", False, "% of images"),
    Metric("forward_passes", False, "passes per map"),
    Metric("runtime", False, "seconds per map"),
]}


@dataclass(frozen=True)
class Claim:
    """One claim of one paper (see the module docstring for each field)."""

    id: str
    paper: str
    notebook: str
    item: str
    statement: str
    metric: str | None
    methods: tuple[str, ...]
    model: str | None
    paper_values: dict = field(default_factory=dict, compare=False)
    direction: str = "describes"
    margin: float | None = None
    kind: str = "continuous"
    status: str = "reproduced"
    substitution: str | None = None
    reason: str | None = None
    outputs: tuple[str, ...] = ()
    evidence: dict | None = field(default=None, compare=False)


_FIELDS = {"id", "item", "statement", "metric", "methods", "model", "paper_values", "direction", "margin", "kind",
           "status", "substitution", "reason", "outputs", "evidence"}
_EVIDENCE_FIELDS = {"table", "value", "methods", "method_column", "image_column", "where", "unit_pattern", "trained", "exact"}
_REQUIRED = {"id", "item", "statement", "direction", "status"}


def _claim(entry: dict, paper: str, notebook: str, where: str) -> Claim:
    unknown = set(entry) - _FIELDS
    missing = _REQUIRED - set(entry)
    if unknown or missing:
        raise ValueError(f"{where}: claim {entry.get('id', '?')!r} has unknown fields {sorted(unknown)} and lacks "
                         f"{sorted(missing)}. Fix: use the fields of lib.analysis.claims' docstring.")
    c = Claim(paper=paper, notebook=notebook, id=entry["id"], item=str(entry["item"]),
              statement=" ".join(str(entry["statement"]).split()), metric=entry.get("metric"),
              methods=tuple(entry.get("methods") or ()), model=entry.get("model"),
              paper_values=dict(entry.get("paper_values") or {}), direction=entry["direction"],
              margin=entry.get("margin"), kind=entry.get("kind") or "continuous", status=entry["status"],
              substitution=entry.get("substitution"), reason=entry.get("reason"),
              outputs=tuple(entry.get("outputs") or ()), evidence=entry.get("evidence"))
    problems = []
    if c.evidence is not None:
        ev = c.evidence
        if not isinstance(ev, dict) or set(ev) - _EVIDENCE_FIELDS or not {"table", "value", "methods"} <= set(ev):
            problems.append(f"evidence needs table, value and methods (and may have {sorted(_EVIDENCE_FIELDS)})")
        elif not set(c.methods[:2]) <= set(ev["methods"]):
            problems.append(f"evidence.methods must map the two methods compared {list(c.methods[:2])} to their labels")
        if c.status == "not_reproducible":
            problems.append("a 'not_reproducible' claim cannot have evidence")
    if c.direction not in DIRECTIONS:
        problems.append(f"direction {c.direction!r} is not one of {DIRECTIONS}")
    if c.status not in STATUSES:
        problems.append(f"status {c.status!r} is not one of {STATUSES}")
    if c.kind not in KINDS:
        problems.append(f"kind {c.kind!r} is not one of {KINDS}")
    if c.metric is not None and c.metric not in METRICS:
        problems.append(f"metric {c.metric!r} is not a key of lib.analysis.claims.METRICS")
    if c.direction in ("better", "worse", "no_change", "not_worse", "size") and (c.metric is None or len(c.methods) < 1):
        problems.append(f"a {c.direction!r} claim needs a metric and the methods it compares")
    if c.direction in ("no_change", "not_worse") and not (isinstance(c.margin, (int, float)) and c.margin > 0):
        problems.append(f"a {c.direction!r} claim needs a positive margin (metric units)")
    if c.status == "substituted" and not c.substitution:
        problems.append("a 'substituted' claim must say what stands in and why (substitution)")
    if c.status == "not_reproducible" and not c.reason:
        problems.append("a 'not_reproducible' claim must say why and what a user with the data would run (reason)")
    if problems:
        raise ValueError(f"{where}: claim {c.id!r}: " + "; ".join(problems))
    return c


@lru_cache(maxsize=None)
def _load(folder: str) -> tuple[Claim, ...]:
    claims: list[Claim] = []
    files = sorted(Path(folder).glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no claim files (*.yaml) in {folder}")
    for path in files:
        doc = yaml.safe_load(path.read_text())
        for key in ("paper", "notebook", "citation", "claims"):
            if key not in doc:
                raise ValueError(f"{path}: no {key!r}. Fix: see lib.analysis.claims' docstring.")
        claims += [_claim(e, doc["paper"], doc["notebook"], str(path)) for e in doc["claims"]]
    seen: dict[str, int] = {}
    for c in claims:
        seen[c.id] = seen.get(c.id, 0) + 1
    repeated = sorted(k for k, v in seen.items() if v > 1)
    if repeated:
        raise ValueError(f"claim ids used more than once: {repeated}")
    return tuple(claims)


def load_claims(paper: str | None = None, folder: str | Path = CLAIMS_DIR) -> list[Claim]:
    """Every claim of the registry (or of one ``paper``), validated."""
    claims = _load(str(folder))
    if paper is None:
        return list(claims)
    chosen = [c for c in claims if c.paper == paper or c.notebook == paper]
    if not chosen:
        raise ValueError(f"no claims for {paper!r}; papers: {sorted({c.paper for c in claims})}")
    return chosen


def claims_frame(paper: str | None = None) -> pd.DataFrame:
    """The registry as a table (one row per claim; methods joined with ' vs ')."""
    rows = []
    for c in load_claims(paper):
        rows.append({"id": c.id, "paper": c.paper, "notebook": c.notebook, "item": c.item, "statement": c.statement,
                     "metric": c.metric, "methods": " vs ".join(c.methods), "model": c.model,
                     "direction": c.direction, "status": c.status,
                     "substitution": c.substitution or "", "reason": c.reason or ""})
    return pd.DataFrame(rows)
