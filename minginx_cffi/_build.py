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
import subprocess
import tempfile

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(HERE), "csrc")

SOURCES = ["coroutine.c", "worker.c", "acceptor.c", "io.c", "http.c", "static.c", "cache.c", "conn.c", "pycall.c", "stats.c", "trace.c",
           "testhooks.c"]

# -Werror holds the engine's own files to a warning-free build (the Makefile's
# `build` target compiles them alone with the same flags); the code cffi
# generates is compiled with them too, minus the one warning it trips.
CFLAGS = [
    "-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
    "-fvisibility=hidden", "-pthread",
]


def cc_accepts(flag):
    """Whether the C compiler ($CC, else gcc) takes `flag` (gcc >= 8 and clang >= 11 take
    -fstack-clash-protection; older ones would fail the whole build on it)."""
    cc = (os.environ.get("CC") or "gcc").split()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("int probe(void) { return 0; }\n")
        try:
            return subprocess.run(cc + ["-Werror", flag, "-c", src, "-o", os.path.join(tmp, "p.o")],
                                  capture_output=True).returncode == 0
        except OSError:
            return False


# A frame bigger than a page probes each page on its way down, so it faults on a
# coroutine's guard (csrc/coroutine.c) instead of stepping over it into the next mapping.
if cc_accepts("-fstack-clash-protection"):
    CFLAGS.append("-fstack-clash-protection")

# make test-asan: MINGINX_SANITIZE=asan (ASan + UBSan, the runtime LD_PRELOADed into python)
# make fuzz:      MINGINX_SANITIZE=fuzz (clang; libFuzzer coverage + ASan from atheris's runtime)
SANITIZE = os.environ.get("MINGINX_SANITIZE", "")
LDFLAGS = ["-pthread"]
if SANITIZE == "asan":
    CFLAGS += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
               "-fno-omit-frame-pointer", "-O1"]
    LDFLAGS += ["-fsanitize=address,undefined"]
elif SANITIZE == "fuzz":
    CFLAGS = [f for f in CFLAGS if f != "-Werror"] + [
        "-fsanitize=fuzzer-no-link,address", "-fno-omit-frame-pointer", "-O1"]


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
