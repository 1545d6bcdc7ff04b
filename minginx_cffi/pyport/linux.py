"""linux.py - the Linux constants the port needs that a Python's standard library may not carry.

CPython's select and os export EPOLLRDHUP and O_PATH; PyPy 3.9 (7.3.11) exports neither
(and no os.eventfd: worker.py falls back to a pipe).  The port takes them from here, the
one place where each has a fallback, and the fallback is the kernel's own number:

- EPOLLRDHUP: include/uapi/linux/eventpoll.h, 0x2000 on every architecture.
- O_PATH: include/uapi/asm-generic/fcntl.h, 010000000, the value on x86-64, aarch64, arm,
  riscv, powerpc, s390, mips and loongarch.  alpha, parisc and sparc number it otherwise;
  there the fallback is O_RDONLY, which opens the static root as a readable directory (it
  then needs read permission on it, where O_PATH needs only search permission).
"""

import os
import platform
import select

_OTHER_O_FLAGS = ("alpha", "parisc", "sparc")  # arch/*/include/uapi/asm/fcntl.h defines its own O_PATH

EPOLLRDHUP = getattr(select, "EPOLLRDHUP", 0x2000)

if hasattr(os, "O_PATH"):
    O_PATH = os.O_PATH
elif platform.machine().startswith(_OTHER_O_FLAGS):
    O_PATH = os.O_RDONLY
else:
    O_PATH = 0o10000000
