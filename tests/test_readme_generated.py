"""The README's speed tables and result tables are generated from committed files, never typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cpu.json"


@pytest.fixture(scope="module")
def readme_results():
    """tools/readme_results.py as a module (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "tools" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data():
    return json.loads(RESULTS.read_text())


def test_readme_speed_section_is_generated_from_the_results(data):
    text = (ROOT / "README.md").read_text()
    section = text[text.index(report.START):text.index(report.END) + len(report.END)] + "\n"
    assert section == report.readme_section(data), (
        "README.md's speed section differs from benchmarks/results/cpu.json. "
        "Fix: python -m benchmarks.report --update-readme")


def test_results_cover_every_method_and_the_three_paths(data):
    from lib.cams import METHODS

    lite0 = next(r for r in data["results"] if r["model"] == "efficientnet_lite0")
    assert {m["method"] for m in lite0["methods"]} == set(METHODS)
    names = [p["name"] for p in lite0["paths"]]
    assert names[:2] == ["eager", "fast"]
    for row in lite0["methods"] + lite0["metrics"]:
        if row["fast_path"]:
            assert "diff_max" in row["fast"], row.get("method") or row["metric"]
    assert {b["model"] for b in data["forward_paths"]} >= {"efficientnet_lite0", "efficientnet_lite2", "resnet50"}


def test_update_readme_needs_the_markers(tmp_path, data):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="speed:start"):
        report.update_readme(data, readme)
    readme.write_text(f"before\n{report.START}\nold\n{report.END}\nafter\n")
    assert report.update_readme(data, readme)
    assert not report.update_readme(data, readme)  # idempotent
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text


def test_readme_result_tables_are_generated_from_the_figures(readme_results):
    module = readme_results
    text = (ROOT / "README.md").read_text()
    assert module.render(text) == text, (
        "README.md's result tables differ from figures/*/*.csv. Fix: python tools/readme_results.py")


def test_csv_table_renders_every_cell(tmp_path, readme_results):
    module = readme_results
    path = tmp_path / "t.csv"
    path.write_text('method,value\nGrad-CAM,"1.0 [0.5, 1.5]"\na|b,\n')
    assert module.csv_table(path) == ["| method | value |", "|---|---|", "| Grad-CAM | 1.0 [0.5, 1.5] |",
                                      "| a\\|b |   |"]
