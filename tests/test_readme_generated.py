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


def test_readme_full_profile_table_is_generated_from_its_json():
    from benchmarks import full_profile
    result = json.loads((ROOT / "benchmarks" / "results" / "full_profile.json").read_text())
    assert full_profile.readme_table(result) in (ROOT / "README.md").read_text(), \
        "README.md's full-profile table differs from benchmarks/results/full_profile.json. " \
        "Fix: python benchmarks/full_profile.py --tables-only --update-readme"


def test_full_profile_merges_a_partial_run_into_the_last():
    import pandas as pd
    from benchmarks.full_profile import merged_cost
    row = {"target_rule": "predicted", "group": "ad_ic", "shards": 1, "images": 16}
    previous = {"jobs": 2, "wall_s": 100.0, "methods": [{"method": "a"}, {"method": "b"}],
                "per_group": [row | {"method": "a", "wall_s_per_image": 2.0}, row | {"method": "b", "wall_s_per_image": 5.0}]}
    measured = pd.DataFrame([row | {"model": "m", "method": "a", "wall_s_per_image": 9.0},
                             row | {"model": "m", "method": "b", "wall_s_per_image": 3.0}])
    cost, runs = merged_cost(measured, previous, ["b"], 50.0, "huge pages", 128)
    assert dict(zip(cost.method, cost.wall_s_per_image)) == {"a": 2.0, "b": 3.0}  # a kept from the last run
    assert dict(zip(cost.method, cost.wall_s_per_shard)) == {"a": 256.0, "b": 384.0}
    assert runs == [{"methods": ["a"], "jobs": 2, "wall_s": 100.0},
                    {"methods": ["b"], "jobs": 1, "wall_s": 50.0, "note": "huge pages"}]
    whole, runs = merged_cost(measured, previous, None, 50.0, "", 128)
    assert len(whole) == 2 and runs[0]["methods"] == ["a", "b"]
    with pytest.raises(SystemExit, match="--methods c"):
        merged_cost(measured, previous, ["c"], 50.0, "", 128)
    with pytest.raises(SystemExit, match="earlier"):
        merged_cost(measured, None, ["b"], 50.0, "", 128)


def test_markdown_of_a_run_without_metrics(data):
    """`benchmarks/run.py --no-metrics` writes results without metric rows: no Metrics section, no KeyError."""
    without = {**data, "results": [{k: v for k, v in r.items() if k != "metrics"} for r in data["results"]]}
    text = report.markdown(without)
    assert "## Methods" in text and "## Metrics" not in text
    assert "## Metrics" in report.markdown(data)
