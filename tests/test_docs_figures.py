"""The documentation's performance figures are rendered from bench/results/ (tools/render_figures.py):
the committed pages equal a fresh rendering, and no figure is written by hand outside a region."""

import os
import re
import subprocess
import sys

import pytest

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(TREE, "tools", "render_figures.py")

pytestmark = pytest.mark.skipif(
    not os.path.isdir(os.path.join(TREE, "bench", "results")),
    reason="no bench/results in this copy of the tree",
)

# A figure in prose: a ratio (1.74x), a rate (87,191 req/s, 85k req/s), CPU per request, memory
# per connection.  Outside a figures region, only the ones below may stand, each for its reason.
FIGURE = re.compile(
    r"\d\.\d\dx\b|\d[\d,.]*k? req/s|\d+(\.\d+)? us(/req| of server CPU| per request)|KiB each"
)
NOT_OURS = {
    # measured by the author on a 16-core machine, quoted as theirs
    "README.md": ["workers in one process did 85k req/s"],
}


def tool():
    sys.path.insert(0, os.path.dirname(TOOL))
    try:
        import render_figures
    finally:
        sys.path.pop(0)
    return render_figures


def test_the_pages_are_their_rendering():
    p = subprocess.run([sys.executable, TOOL, "--check"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "run python3 tools/render_figures.py\n" + p.stdout + p.stderr


def test_every_region_is_used_and_each_workload_has_one_source():
    rf = tool()
    used = set()
    for rel in rf.DOCS:
        with open(os.path.join(TREE, rel), encoding="utf-8") as f:
            used |= {m.group(2) for m in rf.REGION.finditer(f.read())}
    assert used == set(rf.RENDER), set(rf.RENDER) ^ used
    results = rf.newest()
    assert set(rf.ORDER) <= set(results), set(rf.ORDER) - set(results)
    # the rendered blocks name their file, its date and its machine
    for wl in rf.ORDER:
        s = results[wl]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", s.date) and "cores" in s.machine, (wl, s.date, s.machine)


def test_a_figure_edited_by_hand_is_caught():
    rf = tool()
    results = rf.newest()
    with open(os.path.join(TREE, "docs", "side-by-side.md"), encoding="utf-8") as f:
        doc = f.read()
    assert rf.rewrite(doc, results) == doc
    m = re.search(r"\| C engine \(lifo\) \| (\d+) \|", doc)
    edited = doc.replace(m.group(0), m.group(0).replace(m.group(1), str(int(m.group(1)) + 1)))
    assert rf.rewrite(edited, results) == doc != edited
    with pytest.raises(ValueError):
        rf.rewrite("<!-- figures:nonesuch -->\n<!-- /figures -->", results)


def test_no_figure_outside_a_region():
    rf = tool()
    pages = rf.DOCS + ["docs/production.md", "docs/conformance.md"]
    found = []
    for rel in pages:
        with open(os.path.join(TREE, rel), encoding="utf-8") as f:
            text = rf.REGION.sub("", f.read())
        for line in text.splitlines():
            if FIGURE.search(line) and not any(ok in line for ok in NOT_OURS.get(rel, [])):
                found.append("%s: %s" % (rel, line.strip()))
    assert not found, "performance figures written by hand (put them in a figures region):\n" + "\n".join(
        found
    )
