"""README's usage block is `minginx-cffi serve --help` (tools/readme_usage.py, make readme-usage)."""

import os
import subprocess
import sys

import pytest

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(TREE, "tools", "readme_usage.py")


def test_readme_usage_block_agrees_with_help():
    p = subprocess.run([sys.executable, TOOL, "--check"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize(
    "flag", ["--switch", "--accept", "--defer-accept", "--log-level", "--processes", "--threads"]
)
def test_readme_names_every_flag(flag):
    with open(os.path.join(TREE, "README.md"), encoding="utf-8") as f:
        assert "  " + flag + " " in f.read()


def test_check_fails_when_they_disagree(tmp_path):
    sys.path.insert(0, os.path.dirname(TOOL))
    try:
        import readme_usage
    finally:
        sys.path.pop(0)
    with open(readme_usage.README, encoding="utf-8") as f:
        doc = f.read()
    help_text = readme_usage.help_text()
    assert readme_usage.rewrite(doc, help_text) == doc
    stale = doc.replace("  --switch", "  --swtich")
    assert readme_usage.rewrite(stale, help_text) != stale
    with pytest.raises(ValueError):
        readme_usage.rewrite("no markers here", help_text)
