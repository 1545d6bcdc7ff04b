"""The cffi build script: compiles csrc/ into the extension module ``minginx_cffi._minginx``.

API mode, out of line (cffi's "main mode of usage"): setup.py names this file
in ``cffi_modules`` and setuptools compiles the module at ``pip install``.

The contract is ``csrc/minginx.h``, read here as it is: the lines cffi's cdef
parser does not take (include guards, #include) are dropped, and every
``#define NAME value`` becomes ``#define NAME ...`` so the C compiler, not a
copy in Python, supplies the numbers.
"""

import os
import re
import shutil
import sys
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(HERE), "csrc")

# every csrc/*.c is part of the engine (the Makefile's check-c globs the same way)
SOURCES = sorted(f for f in os.listdir(CSRC) if f.endswith(".c"))


def check_build_host():
    """Stop with one sentence, not a compiler traceback, where the engine cannot build."""
    if not sys.platform.startswith("linux"):
        sys.exit(
            "minginx-cffi: the C engine runs on Linux only (it uses epoll, accept4, "
            "openat2 and sendfile); this is %s." % sys.platform
        )
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    if not cc or not shutil.which(cc[0]):
        sys.exit(
            "minginx-cffi: no C compiler found (%s); install one to build the engine, "
            "e.g. apt-get install gcc." % (cc[0] if cc else "CC is empty")
        )
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        # (PyPy's headers are Debian's pypy3-dev: /usr/include/pypy3.9)
        dev = "pypy3-dev" if sys.implementation.name == "pypy" else "python3-dev"
        sys.exit(
            "minginx-cffi: the Python development headers are missing (no Python.h in %s); "
            "install them, e.g. apt-get install %s." % (include, dev)
        )


check_build_host()

# Warnings on, never errors in a user's build: the next compiler release's new
# warning must not break `pip install`.  Developers and CI build with
# MINGINX_WERROR=1 (make check-c, make build, .ci/run), which holds the engine's
# files to a warning-free build; the code cffi generates is compiled with the
# same flags, minus the one warning it trips.
CFLAGS = [
    "-std=gnu11",
    "-O2",
    "-g",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-fvisibility=hidden",
    "-pthread",
]
if os.environ.get("MINGINX_WERROR") == "1":
    CFLAGS.append("-Werror")
# make test-asan: MINGINX_SANITIZE=asan (ASan + UBSan, the runtime LD_PRELOADed into python)
# make fuzz:      MINGINX_SANITIZE=fuzz (clang; libFuzzer coverage + ASan from atheris's runtime)
SANITIZE = os.environ.get("MINGINX_SANITIZE", "")
LDFLAGS = ["-pthread"]
if SANITIZE == "asan":
    CFLAGS += [
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=undefined",
        "-fno-omit-frame-pointer",
        "-O1",
    ]
    LDFLAGS += ["-fsanitize=address,undefined"]
elif SANITIZE == "fuzz":
    CFLAGS = [f for f in CFLAGS if f != "-Werror"] + [
        "-fsanitize=fuzzer-no-link,address",
        "-fno-omit-frame-pointer",
        "-O1",
    ]


def read_cdef(path):
    out = []
    for line in open(path, encoding="utf-8"):
        s = line.strip()
        if s.startswith("#"):
            m = re.match(r"#define\s+(MG_\w+|RDY_\w+)\s+\S", s)
            if m and m.group(1) != "MG_EXTERN_PYTHON":
                out.append("#define %s ..." % m.group(1))
            continue
        # C calls back into Python through these (minginx.h: mg_py_batch)
        out.append(line.rstrip("\n").replace("MG_EXTERN_PYTHON", 'extern "Python+C"'))
    return "\n".join(out)


ffibuilder = FFI()
ffibuilder.cdef(read_cdef(os.path.join(CSRC, "minginx.h")))
ffibuilder.set_source(
    "minginx_cffi._minginx",
    '#include "minginx.h"\n',
    sources=[os.path.relpath(os.path.join(CSRC, s)) for s in SOURCES],
    include_dirs=[os.path.relpath(CSRC)],
    extra_compile_args=CFLAGS,
    extra_link_args=LDFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
