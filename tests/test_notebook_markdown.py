"""No measured number is typed into a notebook's markdown: conclusions are rendered by code.

A number in a markdown cell of notebooks 01-05 must be one of:

* a citation: ``Table 3``, ``Eq. 6``, ``Fig. 7``, ``Section 4.2``, ``§3.1``;
* a constant of an equation or a parameter, written as math (``$\\sigma = 0.3$``) or code
  (```lr = 1e-4```);
* the paper's own value: in a sentence that says so ("the paper reports 53.9 -> 53.4").

Anything else that looks measured (a decimal, a percentage, ``n = 128``) fails the test with the
cell and the sentence, so that a reader can trust every number to come from a computed table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("0[1-5]_*.ipynb"))

MATH_OR_CODE = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|```.*?```|`[^`\n]+`", re.S)
LINKS = re.compile(r"\]\([^)]*\)|https?://\S+|\.\./\S+")
MEASURED = re.compile(r"(?<![\w.])(?:n\s*=\s*\d+|\d+\.\d+\s*%?|\d+\s*%)")
CITATION = re.compile(r"(?:Tables?|Eqs?\.|Equations?|Figs?\.|Figures?|Sections?|Sec\.|§|Appendix|Algorithm|Alg\.)"
                      r"\s*[\dA-Z.,\-–and ]*$")
PAPER = re.compile(r"\b(?:paper|papers'|paper's|authors?|reports?|reported|PROTOCOLS)\b", re.I)


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;:!?])\s+(?=[A-Z*(])|\n\s*\n|\n[*-] ", text) if s.strip()]


def measured_numbers(markdown: str) -> list[tuple[str, str]]:
    """``(number, sentence)`` of every number in ``markdown`` that is not a citation, math, code or
    the paper's value."""
    text = LINKS.sub(" ", MATH_OR_CODE.sub(" ", markdown))
    found = []
    for sentence in sentences(text):
        if PAPER.search(sentence):
            continue
        for match in MEASURED.finditer(sentence):
            if CITATION.search(sentence[:match.start()][-30:]):
                continue
            found.append((match.group().strip(), " ".join(sentence.split())[:160]))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_measured_number_in_markdown(path):
    cells = json.loads(path.read_text())["cells"]
    bad = [(i, number, sentence) for i, cell in enumerate(cells) if cell["cell_type"] == "markdown"
           for number, sentence in measured_numbers("".join(cell["source"]))]
    assert not bad, "numbers typed into markdown (render them from the results, or cite them):\n" + "\n".join(
        f"  cell {i}: {number!r} in: {sentence}" for i, number, sentence in bad)


def test_the_rule_catches_typed_results_and_allows_citations():
    assert measured_numbers("Our AD is 22.4 and IC 28%.") == [("22.4", "Our AD is 22.4 and IC 28%."),
                                                              ("28%", "Our AD is 22.4 and IC 28%.")]
    assert measured_numbers("We evaluate n = 128 images.")
    assert not measured_numbers("As in Table 3 and Eq. 6 (Section 4.2), with $\\sigma = 0.3$ and `lr = 1e-4`.")
    assert not measured_numbers("The paper reports insertion 53.9 and 53.4.")
    assert not measured_numbers("See [the data](../shared/data/README.md) v1.2.")
