"""Tables of ``benchmarks/run.py``'s results, and the README's speed section rendered from them.

    python -m benchmarks.report                    # print the tables of benchmarks/results/cpu.json
    python -m benchmarks.report --update-readme    # rewrite README.md's speed section from it

The README's section between ``<!-- speed:start -->`` and ``<!-- speed:end -->`` is generated
here and nowhere else; ``tests/test_benchmark_report.py`` fails when it differs from what the
committed JSON renders, so the README can never disagree with the measurements.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["forward_line", "method_line", "markdown", "readme_section", "update_readme", "START", "END"]

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- speed:start -->", "<!-- speed:end -->"
PATH_LABELS = {"eager": "eager fp32", "fast": "fast fp32", "fast-bf16": "fast bf16", "eager-bf16": "eager bf16"}


def _fmt(value, spec: str = ".2f", suffix: str = "") -> str:
    """``value`` with ``spec``; rates below 1 with three significant digits (0.00489, not 0.00)."""
    if value is None:
        return "-"
    if spec == ".2f" and abs(value) < 1:
        spec = ".3g"
    return f"{value:{spec}}{suffix}"


def _ratio(a, b) -> str:
    return "-" if a is None or b in (None, 0) else f"{a / b:.1f}x"


def forward_line(row: dict) -> str:
    if "error" in row:
        return f"{row['path']:38s} did not run: {row['error']}"
    return (f"{row['path']:38s} " + "  ".join(f"batch {k[len('img_s_batch'):]}: {row[k]:7.1f} img/s"
                                             for k in row if k.startswith("img_s_batch"))
            + f"  logits max diff {row['logit_diff_max']:.2g}")


def method_line(row: dict, paths: list[str]) -> str:
    name = row.get("method") or row.get("metric")
    parts = [f"{p} {_fmt(row[p]['img_s']):>9s} img/s" for p in paths if p in row]
    if "peer" in row:
        parts.append(f"peer {_fmt(row['peer']['img_s']):>9s} img/s")
    return f"{name:36s} " + "  ".join(parts)


def _forward_table(data: dict) -> list[str]:
    lines = ["| model | path | img/s batch 8 | img/s batch 32 | x eager fp32 (batch 8) | largest logit difference "
             "to eager fp32 | top-1 agreement | export / compile s |", "|---|---|---|---|---|---|---|---|"]
    for block in data.get("forward_paths", []):
        rows = block["paths"]
        eager = rows[0].get("img_s_batch8")
        for r in rows:
            if "error" in r:
                lines.append(f"| {block['model']} | {r['path']} | did not run: {r['error']} | | | | | |")
                continue
            diff = "-" if r is rows[0] else f"{r['logit_diff_max']:.2g}"
            lines.append(
                f"| {block['model']} | {r['path']} | {r['img_s_batch8']:.1f} | {r['img_s_batch32']:.1f} | "
                f"{_ratio(r['img_s_batch8'], eager)} | {diff} | "
                f"{r['top1_agreement']:.0%} | {r['setup_s']:.1f} |")
    return lines


def _path_names(result: dict) -> list[str]:
    return [p["name"] for p in result["paths"]]


def _rows_table(data: dict, kind: str) -> list[str]:
    """Methods or metrics: every path's img/s, the fast path's gain, the peer, the limit and the bound."""
    lines = []
    for result in data["results"]:
        names = _path_names(result)
        ref, fast = names[0], (names[1] if len(names) > 1 else None)
        extra = names[2:]
        head = [kind, "images", "passes"] + [f"{PATH_LABELS.get(n, n)} img/s" for n in names]
        if fast:
            head += [f"{PATH_LABELS[fast]} / {PATH_LABELS[ref]}"]
        if kind == "method":
            head += ["peer img/s", "ours / peer"]
        head += [f"{PATH_LABELS.get(fast or ref)} limit img/s", "of limit"]
        if fast:
            head += [f"largest difference, {PATH_LABELS[fast]}"] + [f"largest difference, {PATH_LABELS[e]}"
                                                                    for e in extra]
        lines += [f"{result['model']}, {result['inputs']}:", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for row in result.get("methods" if kind == "method" else "metrics", []):  # none under --no-metrics
            best = fast if fast in row else ref
            cells = [row.get("method") or row["metric"], str(row["images"]), str(row["forward_passes"])]
            cells += [_fmt(row[n]["img_s"]) if n in row else "as eager" for n in names]
            if fast:
                cells.append(_ratio(row[fast]["img_s"], row[ref]["img_s"]) if fast in row else
                             ("PyTorch (hook)" if row.get("method") == "ablationcam" else "PyTorch (gradients)"))
            if kind == "method":
                peer = row.get("peer")
                ours = max(row[n]["img_s"] for n in names[:2] if n in row)
                cells += [f"{_fmt(peer['img_s'])} ({peer['name']})" if peer else "-",
                          _ratio(ours, peer["img_s"]) if peer else "-"]
            cells += [_fmt(row[best].get("limit_img_s")), _fmt(row[best].get("of_limit"), ".0%")]
            if fast:
                unit = f" {row['unit']}" if row.get("unit") else ""
                cells += [f"{row[n]['diff_max']:.2g}{unit}" if n in row and "diff_max" in row[n] else "-"
                          for n in [fast, *extra]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def markdown(data: dict) -> str:
    meta = data["meta"]
    runtimes = ", ".join(f"{k} {v}" for k, v in meta.get("runtimes", {}).items() if v)
    lines = [f"`{meta['command']}`  ",
             f"{meta.get('gpu') or meta.get('processor', 'CPU')}, {meta['threads']} threads, torch {meta['torch']}, "
             f"{runtimes}; {meta['seconds'] / 60:.0f} min", "", "## Forward paths", ""]
    lines += _forward_table(data) + ["", "## Methods", ""] + _rows_table(data, "method")
    if any("metrics" in result for result in data["results"]):  # none under --no-metrics
        lines += ["## Metrics", ""] + _rows_table(data, "metric")
    return "\n".join(lines).rstrip() + "\n"


def _find(rows: list[dict], key: str, name: str) -> dict | None:
    return next((r for r in rows if r.get(key, "").startswith(name)), None)


def readme_section(data: dict) -> str:
    """The README's speed section: the forward paths of Lite0 and the Lite0 methods and metrics."""
    meta = data["meta"]
    lines = [START, "<!-- generated by `python -m benchmarks.report --update-readme` from "
             "benchmarks/results/cpu.json; do not edit -->", "",
             f"Measured by `{meta['command']}` on {meta.get('processor', 'CPU')} with {meta['threads']} threads "
             f"(torch {meta['torch']}; " + ", ".join(f"{k} {v}" for k, v in meta.get("runtimes", {}).items() if v)
             + "). Every number comes from one run; read ratios, not single times.", "",
             "**Forward paths** (the plain forward pass; largest logit difference to PyTorch eager fp32 on the "
             "same validation images):", ""]
    lines += _forward_table(data)
    lines += ["", "**Methods and metrics** on each path of the library (`eager`: PyTorch, `CAM_INFERENCE=torch`; "
              "`fast`: the default CPU path; `fast bf16`: its explicit option). *limit*: the path's forward rate "
              "divided by the forward passes per image. *Largest difference*: per pixel for maps (min-max "
              "normalised), per image for metrics, against eager fp32 on the same images.", ""]
    lines += _rows_table(data, "method") + _rows_table(data, "metric")
    lines.append(END)
    return "\n".join(lines) + "\n"


def update_readme(data: dict, readme: Path = ROOT / "README.md") -> bool:
    """Replace the README's speed section with :func:`readme_section`; ``True`` when it changed."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} section. Fix: add the two markers where the speed "
                         "tables belong.")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1].lstrip("\n")
    new = before + readme_section(data) + after
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "cpu.json"))
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args(argv)
    data = json.loads(Path(args.results).read_text())
    if args.update_readme:
        print("README.md " + ("updated" if update_readme(data) else "already up to date"))
    else:
        print(markdown(data))


if __name__ == "__main__":
    main()
