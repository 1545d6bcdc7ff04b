"""README's usage block, made from ``minginx-cffi serve --help`` (``make readme-usage``).

The block between the markers below is the command's own help, as a user sees it
in an 80-column terminal, so a new flag reaches README by rerunning this script;
``--check`` only compares (exit 1 and a diff when they disagree), and
tests/test_readme_usage.py runs that check, so README cannot fall behind.
"""

import difflib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BEGIN = "<!-- usage:begin: make readme-usage writes this block from `minginx-cffi serve --help` -->"
END = "<!-- usage:end -->"


def help_text():
    """``minginx-cffi serve --help`` of this tree, at a fixed width (click reads COLUMNS)."""
    env = dict(os.environ, COLUMNS="80", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MINGINX_TEST_SWITCH", None)  # the defaults users get (make test-asan sets it)
    env.pop("MINGINX_TEST_IO", None)  # (tests/conftest.py's cffi-uring engine sets it)
    out = subprocess.run(
        [sys.executable, "-m", "minginx_cffi", "serve", "--help"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.rstrip("\n") + "\n"


def block(text):
    """The help as a Markdown code block, between the markers."""
    lines = ["    " + line if line.strip() else "" for line in text.splitlines()]
    return BEGIN + "\n\n" + "\n".join(lines) + "\n\n" + END


def rewrite(readme_text, text):
    """readme_text with its usage block replaced; ValueError without the markers."""
    start, end = readme_text.find(BEGIN), readme_text.find(END)
    if start < 0 or end < start:
        raise ValueError("README.md has no usage block (%s ... %s)" % (BEGIN, END))
    return readme_text[:start] + block(text) + readme_text[end + len(END) :]


def main(argv):
    with open(README, encoding="utf-8") as f:
        old = f.read()
    new = rewrite(old, help_text())
    if "--check" in argv:
        if new != old:
            sys.stdout.writelines(
                difflib.unified_diff(old.splitlines(True), new.splitlines(True), "README.md", "serve --help")
            )
            print(
                "README's usage block and `minginx-cffi serve --help` disagree: run `make readme-usage`",
                file=sys.stderr,
            )
            return 1
        return 0
    if new != old:
        with open(README, "w", encoding="utf-8") as f:
            f.write(new)
        print("README.md: usage block rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
