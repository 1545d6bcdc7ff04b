"""The C engine builds warning-free with -Wall -Wextra -Werror, on its own, outside cffi."""

import glob
import os
import shutil
import subprocess

import pytest

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")


@pytest.mark.skipif(not shutil.which(os.environ.get("CC", "cc")), reason="no C compiler")
def test_csrc_compiles_with_all_warnings_as_errors(tmp_path):
    cc = os.environ.get("CC", "cc")
    for src in sorted(glob.glob(os.path.join(CSRC, "*.c"))):
        p = subprocess.run([cc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-c", src,
                            "-o", str(tmp_path / "x.o")], capture_output=True, text=True)
        assert p.returncode == 0, "%s:\n%s" % (src, p.stderr)
