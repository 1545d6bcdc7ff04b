"""--reload: the master watches the app's source tree with inotify and reloads on a change.

Theory of operation.  The kernel tells us (inotify(7)); nothing polls.  A watch is put on
every directory under each --reload-dir (the current directory by default), and on every
new one as it appears; an event on a file whose name matches an --reload-include pattern
(``*.py`` by default) and no --reload-exclude one is a change.  Editors save in bursts
(a write, a rename, a chmod): changes are gathered until the tree has been quiet for
DEBOUNCE seconds, then the master starts a new generation through its SIGHUP path
(_master.py), so a reload never drops a request, and a file that does not import keeps the
old generation serving with one error line.

inotify through ctypes rather than a library: the kernel interface is the whole job (the
server runs on Linux only), and watchfiles, the well-kept choice (uvicorn's), is a Rust
extension without a wheel for PyPy 3.9, which this package supports (a source build needs
a Rust toolchain).
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import os
import struct
import time

#: seconds the tree must be quiet before a burst of changes becomes one reload
DEBOUNCE = 0.1

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
#: a file written and closed, or renamed into place (an editor's save), made or removed
MASK = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)

#: directories never watched: caches and version control, where nothing is the app's code
SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".venv", "venv", "node_modules", ".mypy_cache", ".tox"}
DEFAULT_INCLUDE = ("*.py",)
DEFAULT_EXCLUDE = (".*", "*~", "*.py[cod]", "*.swp", "*.swx")


class WatchError(OSError):
    """inotify could not be set up (the error says which call)."""


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return libc


class Watcher:
    """The source tree under dirs, watched: ``fd`` for the master's poll; ``read()`` takes
    what came; ``due()`` says when the quiet period ends; ``take()`` the changed paths."""

    def __init__(self, dirs, include=DEFAULT_INCLUDE, exclude=DEFAULT_EXCLUDE):
        self._libc = _libc()
        self.include = tuple(include) or DEFAULT_INCLUDE
        self.exclude = tuple(exclude)
        self.fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            e = ctypes.get_errno()
            raise WatchError(e, "inotify_init1: %s" % os.strerror(e))
        self.dirs = {}  # watch descriptor -> directory
        self.changed = []  # paths changed since take()
        self.last = None  # monotonic time of the last change
        try:
            for d in dirs:
                self._watch_tree(os.path.abspath(d))
        except BaseException:
            self.close()
            raise

    def _watch_tree(self, top):
        for d, subdirs, _files in os.walk(top):
            subdirs[:] = [s for s in subdirs if s not in SKIP_DIRS and not s.startswith(".")]
            self._watch(d)

    def _watch(self, d):
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(d), MASK)
        if wd < 0:
            e = ctypes.get_errno()
            if e in (errno.ENOENT, errno.ENOTDIR):  # gone before we got to it
                return
            if e == errno.ENOSPC:
                why = "too many watches (sysctl fs.inotify.max_user_watches)"
                raise WatchError(e, "inotify_add_watch(%s): %s" % (d, why))
            raise WatchError(e, "inotify_add_watch(%s): %s" % (d, os.strerror(e)))
        self.dirs[wd] = d

    def wanted(self, name):
        return any(fnmatch.fnmatch(name, p) for p in self.include) and not any(
            fnmatch.fnmatch(name, p) for p in self.exclude
        )

    def read(self):
        """Take every event the kernel has for us (the fd is non-blocking)."""
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return
            except OSError:
                return
            if not data:
                return
            i = 0
            while i + _EVENT.size <= len(data):
                wd, mask, _cookie, n = _EVENT.unpack_from(data, i)
                name = data[i + _EVENT.size : i + _EVENT.size + n].split(b"\0", 1)[0]
                i += _EVENT.size + n
                self._event(wd, mask, os.fsdecode(name))

    def _event(self, wd, mask, name):
        if mask & IN_Q_OVERFLOW:  # events were lost: count it as a change
            self._changed("(inotify queue overflow)")
            return
        d = self.dirs.get(wd)
        if mask & IN_IGNORED:
            self.dirs.pop(wd, None)
            return
        if d is None:
            return
        path = os.path.join(d, name) if name else d
        if mask & IN_ISDIR:
            if mask & (IN_CREATE | IN_MOVED_TO) and name not in SKIP_DIRS and not name.startswith("."):
                self._watch_tree(path)  # a new package: watched, and what it holds is a change
                for sub, _dirs, files in os.walk(path):
                    for f in files:
                        if self.wanted(f):
                            self._changed(os.path.join(sub, f))
            return
        if name and self.wanted(name):
            self._changed(path)

    def _changed(self, path):
        if path not in self.changed:
            self.changed.append(path)
        self.last = time.monotonic()

    def due(self):
        """Seconds until the changes gathered are due (None: none waiting)."""
        if not self.changed:
            return None
        return max(0.0, self.last + DEBOUNCE - time.monotonic())

    def take(self):
        """The paths changed, once the tree has been quiet for DEBOUNCE; else []."""
        if not self.changed or self.due() > 0:
            return []
        changed, self.changed = self.changed, []
        return changed

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
