"""make exercises-ci: keeps the exercises of docs/walkthrough.md (section 6) from rotting.

For each docs/solutions/exercise-N.patch:
  1. its check, tests/exercises/test_exercise_N.py, run on the tree as it is, must FAIL
     (every exercise asks for a change, or for an answer written down in docs/exercises/);
  2. in a temporary copy of the tracked files, the patch must apply (git apply) and the
     check must PASS; the copy builds its own engine when the patch touches csrc/;
  3. where the exercise starts from a patch of its own (STARTS: the planted bug), the check
     must FAIL with only that one applied (ASan still finds the bug).
Two exercises at a time (the machine's two cores); prints one line per step and its time.
Exit status 1 if anything is not as it should be.

    python3 tools/exercises_ci.py          # all
    python3 tools/exercises_ci.py 3 5      # some
"""

import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLUTIONS = os.path.join(TREE, "docs", "solutions")
#: exercises that begin by applying a patch: exercise -> that patch
STARTS = {13: os.path.join(TREE, "docs", "exercises", "planted-bug.patch")}


def exercises():
    found = []
    for p in glob.glob(os.path.join(SOLUTIONS, "exercise-*.patch")):
        m = re.search(r"exercise-(\d+)\.patch$", p)
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def check(tree, n, timeout=600):
    """Run exercise n's check in tree: (pytest's exit status, its output's tail)."""
    env = dict(os.environ, PYTHONPATH=tree, PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/exercises/test_exercise_%d.py" % n,
        ],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )
    return p.returncode, p.stdout.decode("utf-8", "replace")[-3000:]


def copy_tree(dst):
    """The files git knows or would add (as they are on disk), and the built engine."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=TREE,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout.split(b"\0")
    for name in names:
        if not name:
            continue
        rel = name.decode()
        src = os.path.join(TREE, rel)
        if not os.path.isfile(src):
            continue  # deleted in the working tree
        os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dst, rel))
    for so in glob.glob(os.path.join(TREE, "minginx_cffi", "_minginx*.so")):
        shutil.copy2(so, os.path.join(dst, "minginx_cffi"))
    # a repository of its own, whose HEAD is the tree before the patch (exercise 12 asks git)
    git = ["git", "-c", "user.name=exercises-ci", "-c", "user.email=exercises-ci@localhost"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--no-verify", "-m", "the tree"]):
        subprocess.run(git + cmd, cwd=dst, check=True, stdout=subprocess.DEVNULL)


def patched_check(n, patch):
    """Exercise n's check in a copy of the tree with patch applied: (exit status, output)."""
    with tempfile.TemporaryDirectory(prefix="exercise-%d-" % n) as tmp:
        copy_tree(tmp)
        a = subprocess.run(["git", "apply", patch], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if a.returncode:
            return "no", "%s does not apply:\n%s" % (patch, a.stdout.decode())
        text = open(patch, encoding="utf-8").read()
        if re.search(r"^\+\+\+ b/(csrc/|minginx_cffi/_build\.py)", text, re.M):
            for so in glob.glob(os.path.join(tmp, "minginx_cffi", "_minginx*.so")):
                os.unlink(so)
            b = subprocess.run(
                [sys.executable, "minginx_cffi/_build.py"],
                cwd=tmp,
                env=dict(os.environ, MINGINX_WERROR="1"),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            if b.returncode:
                return "no", "it does not build:\n%s" % b.stdout.decode("utf-8", "replace")[-3000:]
        return check(tmp, n)


def one(n):
    """(n, ok, lines)."""
    lines, ok = [], True
    t0 = time.monotonic()
    rc, out = check(TREE, n)
    if rc != 1:  # 1: tests ran and failed; 0 passed; 2-5: interrupted, usage, nothing collected
        ok = False
        lines.append("exercise %d: the check should FAIL on the tree (pytest exit %d)\n%s" % (n, rc, out))
    else:
        lines.append("exercise %d: fails on the tree, as it should (%.0f s)" % (n, time.monotonic() - t0))
    patch = os.path.join(SOLUTIONS, "exercise-%d.patch" % n)
    runs = [(patch, 0, "passes with its solution")]
    if n in STARTS:
        start = os.path.relpath(STARTS[n], TREE)
        runs.append((STARTS[n], 1, "fails with only %s applied, as it should" % start))
    for p, want, said in runs:
        t0 = time.monotonic()
        rc, why = patched_check(n, p)
        if rc == want:
            lines.append("exercise %d: %s (%.0f s)" % (n, said, time.monotonic() - t0))
        else:
            ok = False
            lines.append("exercise %d: with %s the check exits %s, not %d\n%s" % (n, p, rc, want, why))
    return n, ok, lines


def main(argv):
    wanted = [int(a) for a in argv] or exercises()
    missing = [n for n in wanted if not os.path.exists(os.path.join(SOLUTIONS, "exercise-%d.patch" % n))]
    if missing:
        print("exercises-ci: no docs/solutions/exercise-N.patch for %s" % missing)
        return 1
    t0 = time.monotonic()
    bad = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for n, ok, lines in pool.map(one, wanted):
            print("\n".join(lines), flush=True)
            if not ok:
                bad.append(n)
    print(
        "exercises-ci: %d exercises in %.0f s; %s"
        % (len(wanted), time.monotonic() - t0, "all as they should be" if not bad else "WRONG: %s" % bad)
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
