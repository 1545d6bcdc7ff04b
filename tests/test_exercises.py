"""The exercises of docs/walkthrough.md, section 6, stay whole: each has a check
(tests/exercises/test_exercise_N.py), a reference solution (docs/solutions/exercise-N.patch)
that still applies to the tree, and its place in the walkthrough.  Whether each check
fails on the tree and passes with its solution is `make exercises-ci` (it builds)."""

import pathlib
import re
import shutil
import subprocess

import pytest

TREE = pathlib.Path(__file__).resolve().parents[1]


def numbers(folder, pattern):
    return {int(re.search(r"(\d+)", p.name).group(1)) for p in (TREE / folder).glob(pattern)}


CHECKS = numbers("tests/exercises", "test_exercise_*.py")
SOLUTIONS = numbers("docs/solutions", "exercise-*.patch")


def test_every_exercise_has_a_check_a_solution_and_its_section():
    assert CHECKS and CHECKS == SOLUTIONS == set(range(1, len(CHECKS) + 1))
    text = (TREE / "docs" / "walkthrough.md").read_text()
    six = text[text.index("## 6. Exercises") :]
    numbers = [int(n) for n in re.findall(r"^(\d+)\. \*\*", six, re.M)]
    assert numbers == sorted(CHECKS)
    for n in CHECKS:
        assert "make exercise N=%d`" % n in six, "the walkthrough does not tell how to check exercise %d" % n


@pytest.mark.skipif(not shutil.which("git"), reason="git is not installed")
@pytest.mark.parametrize(
    "patch",
    sorted(["docs/solutions/exercise-%d.patch" % n for n in SOLUTIONS])
    + ["docs/exercises/planted-bug.patch"],
)
def test_the_patch_applies(patch):
    p = subprocess.run(
        ["git", "apply", "--check", patch], cwd=TREE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert p.returncode == 0, "%s no longer applies: %s" % (patch, p.stdout.decode())
