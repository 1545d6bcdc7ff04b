"""Listening sockets handed in (systemd, --fd, --uds) and the drop from root (--user/--group).

Each function either returns what it was asked for or raises ServerError with one line
the operator can act on: the CLI prints it and exits non-zero.
"""

import errno
import grp
import os
import pwd
import socket
import stat
import time

from .server import ServerError

#: sd_listen_fds(3): the first socket systemd hands in is fd 3, after stdin/stdout/stderr
SD_LISTEN_FDS_START = 3


def systemd_sockets():
    """The listening socket systemd handed in (socket activation), as a list of zero or one.

    As sd_listen_fds(unset_environment=1): LISTEN_FDS counts the sockets from fd 3 on,
    LISTEN_PID says which process they are for (a variable inherited by some other
    process is not for us), and the variables are unset either way so that the server
    processes, the application and whatever it runs never see them (gunicorn and
    uvicorn read the same pair)."""
    count = os.environ.pop("LISTEN_FDS", None)
    pid = os.environ.pop("LISTEN_PID", None)
    os.environ.pop("LISTEN_FDNAMES", None)
    if count is None or pid is None or not pid.strip().isdigit() or int(pid) != os.getpid():
        return []
    try:
        n = int(count)
    except ValueError:
        raise ServerError("LISTEN_FDS=%r (socket activation) is not a number" % count) from None
    if n <= 0:
        return []
    if n > 1:
        raise ServerError(
            "systemd handed in %d sockets (LISTEN_FDS=%d); minginx-cffi serves "
            "one: give the socket unit one ListenStream=" % (n, n)
        )
    return [
        inherited_socket(SD_LISTEN_FDS_START, "the socket systemd handed in (fd %d)" % SD_LISTEN_FDS_START)
    ]


class Notifier:
    """systemd's Type=notify protocol (sd_notify(3)), for the master: READY=1 once every
    server process serves, RELOADING=1 and READY=1 around a SIGHUP reload, STOPPING=1 at
    a stop, and WATCHDOG=1 every half WatchdogSec= while the master's loop runs.

    As sd_notify(unset_environment=1): NOTIFY_SOCKET and WATCHDOG_USEC/_PID are read once
    and unset, so the server processes and the application never see them (systemd's
    default NotifyAccess=main would ignore their messages anyway).  Without NOTIFY_SOCKET
    every call is a no-op; a message that cannot be sent is dropped, as sd_notify's."""

    def __init__(self):
        addr = os.environ.pop("NOTIFY_SOCKET", None)
        usec = os.environ.pop("WATCHDOG_USEC", None)
        pid = os.environ.pop("WATCHDOG_PID", None)
        self.addr = None
        if addr and addr[0] in "/@":
            self.addr = "\0" + addr[1:] if addr[0] == "@" else addr  # "@": the abstract namespace
        self.watchdog = None  # seconds between pings
        if self.addr and usec and usec.isdigit() and int(usec) > 0:
            if not pid or (pid.isdigit() and int(pid) == os.getpid()):
                self.watchdog = int(usec) / 1e6 / 2
        self.next_ping = None if self.watchdog is None else time.monotonic() + self.watchdog

    def notify(self, *fields):
        """Send the fields ("READY=1", "STATUS=...") as one datagram: True if sent."""
        if self.addr is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto("\n".join(fields).encode(errors="replace"), self.addr)
            return True
        except OSError:
            return False

    def reloading(self):
        """RELOADING=1, with the CLOCK_MONOTONIC time Type=notify-reload asks for."""
        self.notify(
            "RELOADING=1", "MONOTONIC_USEC=%d" % (time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
        )

    def tick(self):
        """WATCHDOG=1 if one is due; returns seconds until the next (None: no watchdog)."""
        if self.next_ping is None:
            return None
        now = time.monotonic()
        if now >= self.next_ping:
            self.notify("WATCHDOG=1")
            self.next_ping = now + self.watchdog
        return max(0.0, self.next_ping - now)


def inherited_socket(fd, what):
    """A listening SOCK_STREAM socket on an inherited fd (--fd N, systemd), non-blocking."""
    try:
        st = os.fstat(fd)
    except (OSError, OverflowError):  # OverflowError: a number no fd can be (--fd 1e11)
        raise ServerError("%s: not an open file descriptor" % what) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise ServerError("%s is not a socket" % what)
    sock = socket.socket(fileno=fd)
    try:
        if sock.type != socket.SOCK_STREAM:
            raise ServerError("%s is not a stream (SOCK_STREAM) socket" % what)
        if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            raise ServerError("%s is not an IP or Unix socket" % what)
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ServerError("%s is not listening (bound and listen() called)" % what)
    except ServerError:
        sock.detach()  # not ours to close
        raise
    sock.setblocking(False)
    sock.set_inheritable(False)  # the application's own subprocesses do not get it
    return sock


def bind_unix(path):
    """A listening Unix socket at path (--uds).  A socket file left by a server that is
    gone (nobody accepts on it) is removed first; one that something still listens on
    is refused as a busy port is; any other file there is never touched.  The socket
    file is made connectable by everyone (0666, as nginx and uvicorn do): the proxy in
    front runs as its own user, and the directory is what guards who may reach it."""
    if not isinstance(path, str) or not path or "\0" in path:
        # "" would bind an unnamed (autobind) socket no proxy can find
        raise ServerError("cannot listen on unix:%r: not a file path" % (path,))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise ServerError("cannot listen on unix:%s: %s" % (path, e.strerror)) from None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ServerError("cannot listen on unix:%s: the file exists and is not a socket" % path)
        # non-blocking: a server that listens there but no longer accepts (its queue
        # full) would otherwise hold this connect, and the start, forever
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            try:
                os.unlink(path)  # stale: its server is gone
            except OSError as e:
                raise ServerError(
                    "cannot listen on unix:%s: cannot remove the stale socket file: %s" % (path, e.strerror)
                ) from None
        except BlockingIOError:  # EAGAIN: a listener whose queue is full is still there
            raise ServerError(
                "cannot listen on unix:%s: %s (a server listens there)"
                % (path, os.strerror(errno.EADDRINUSE))
            ) from None
        except OSError as e:
            raise ServerError("cannot listen on unix:%s: %s" % (path, e.strerror or e)) from None
        else:
            raise ServerError(
                "cannot listen on unix:%s: %s (a server listens there)"
                % (path, os.strerror(errno.EADDRINUSE))
            )
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bind() makes the file 0777 less the umask: this umask gives 0666 with no window
    # in which the path (another file by then, in a shared directory) is chmod()ed
    umask = os.umask(0o111)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise ServerError("cannot listen on unix:%s: %s" % (path, e.strerror or e)) from None
    finally:
        os.umask(umask)
    try:
        sock.listen(65535)
    except OSError as e:
        sock.close()
        try:
            os.unlink(path)  # the file bind() just made
        except OSError:
            pass
        raise ServerError("cannot listen on unix:%s: %s" % (path, e.strerror or e)) from None
    sock.setblocking(False)
    return sock


def unlink_unix(path, inode):
    """Remove the socket file bind_unix() made, unless another server's replaced it since."""
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


class Identity:
    """Who --user/--group name: resolved before anything is bound, switched to after."""

    def __init__(self, user=None, group=None):
        self.user, self.group = user, group
        self.pw = None
        if user is not None:
            try:
                self.pw = pwd.getpwnam(user)
            except KeyError:
                raise ServerError("unknown user %r (--user)" % user) from None
        self.gid = None
        if group is not None:
            try:
                self.gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise ServerError("unknown group %r (--group)" % group) from None
        elif self.pw is not None:
            self.gid = self.pw.pw_gid
        self.noop = False
        if os.geteuid() != 0:
            # only root can switch; naming who we already are is harmless
            if (self.pw is None or self.pw.pw_uid == os.geteuid()) and (
                self.gid is None or self.gid == os.getegid()
            ):
                self.noop = True
            else:
                who = self.pw.pw_name if self.pw is not None else ":" + group
                raise ServerError(
                    "--user/--group need root to switch to %s (running as uid %d)" % (who, os.geteuid())
                )

    def describe(self):
        return "user %s" % self.user if self.user is not None else "group %s" % self.group

    def switch(self, dirs):
        """Drop root: supplementary groups, then the group, then the user (in that order:
        once the uid is not 0, setgroups and setgid are refused), as nginx's ``user``.
        Then check that each (what, path) of dirs is still readable, else one line."""
        if not self.noop:
            try:
                if self.pw is not None:
                    os.initgroups(self.pw.pw_name, self.gid)
                else:
                    os.setgroups([self.gid])
                os.setgid(self.gid)
                if self.pw is not None:
                    os.setuid(self.pw.pw_uid)
            except OSError as e:
                raise ServerError("cannot switch to %s: %s" % (self.describe(), e.strerror)) from None
        for what, path in dirs:
            if not os.access(path, os.R_OK | os.X_OK):
                raise ServerError("%s %r is not readable by %s" % (what, path, self.describe()))


def drop_privileges(user, group, dirs):
    """Server(user=..., group=...): resolve and switch at once (the CLI resolves first)."""
    Identity(user, group).switch(dirs)
