"""The C engine builds warning-free with -Wall -Wextra -Werror, on its own, outside cffi."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")


@pytest.mark.skipif(not shutil.which(os.environ.get("CC", "cc")), reason="no C compiler")
def test_csrc_compiles_with_all_warnings_as_errors(tmp_path):
    cc = os.environ.get("CC", "cc")
    for src in sorted(glob.glob(os.path.join(CSRC, "*.c"))):
        p = subprocess.run(
            [cc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-c", src, "-o", str(tmp_path / "x.o")],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, "%s:\n%s" % (src, p.stderr)


# ------------------------------------------------------- a user's build (pip install)

ROOT = os.path.dirname(CSRC)
BUILD = os.path.join(ROOT, "minginx_cffi", "_build.py")


def build_copy(tmp_path, env_extra, code=None):
    """Run minginx_cffi/_build.py on a copy of csrc/ in tmp_path, as setup.py's cffi_modules does."""
    shutil.copytree(CSRC, tmp_path / "csrc", ignore=shutil.ignore_patterns("*.o"))
    (tmp_path / "minginx_cffi").mkdir()
    shutil.copy(BUILD, tmp_path / "minginx_cffi" / "_build.py")
    env = dict(os.environ)
    env.pop("MINGINX_WERROR", None)
    env.pop("MINGINX_SANITIZE", None)
    env.update(env_extra)
    script = code or "import runpy; runpy.run_path('minginx_cffi/_build.py', run_name='__main__')"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(not shutil.which(os.environ.get("CC", "cc")), reason="no C compiler")
def test_a_new_compiler_warning_does_not_fail_a_users_build(tmp_path):
    # -Wconversion stands for the warning the next compiler release adds: it fires on the
    # engine's code.  A user's build prints it and goes on; a developer's (MINGINX_WERROR=1,
    # as make build, make check-c and .ci/run set) stops at it.
    user = build_copy(tmp_path / "user", {"CFLAGS": "-Wconversion"})
    assert user.returncode == 0, user.stderr[-2000:]
    assert "warning: conversion" in user.stderr
    assert glob.glob(str(tmp_path / "user" / "minginx_cffi" / "_minginx*.so"))
    dev = build_copy(tmp_path / "dev", {"CFLAGS": "-Wconversion", "MINGINX_WERROR": "1"})
    assert dev.returncode != 0
    assert "error: conversion" in dev.stderr


def one_sentence(p):
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode != 0
    assert len(lines) == 1, p.stderr  # no traceback
    return lines[0]


def test_the_build_says_linux_only_elsewhere(tmp_path):
    p = build_copy(
        tmp_path,
        {},
        "import runpy, sys; sys.platform = 'darwin'; "
        "runpy.run_path('minginx_cffi/_build.py', run_name='__main__')",
    )
    assert one_sentence(p).startswith("minginx-cffi: the C engine runs on Linux only")
    assert "darwin" in p.stderr


def test_the_build_names_a_missing_compiler(tmp_path):
    p = build_copy(tmp_path, {"CC": str(tmp_path / "no-such-cc")})
    line = one_sentence(p)
    assert line.startswith("minginx-cffi: no C compiler found (%s)" % (tmp_path / "no-such-cc"))


def test_the_build_names_missing_python_headers(tmp_path):
    p = build_copy(
        tmp_path,
        {},
        "import runpy, sysconfig; real = sysconfig.get_paths; "
        "sysconfig.get_paths = lambda *a: dict(real(*a), include='/nonexistent'); "
        "runpy.run_path('minginx_cffi/_build.py', run_name='__main__')",
    )
    assert "development headers are missing (no Python.h in /nonexistent)" in one_sentence(p)
