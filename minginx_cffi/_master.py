"""The master process of ``minginx-cffi serve``: it holds the sockets, server processes serve.

Theory of operation (nginx's master and workers, gunicorn's arbiter):

* The master checks what it can without the application, binds (or adopts: systemd's
  socket, --fd, --uds) every listening socket, writes the pid file, and then forks
  ``processes`` server processes, which drop root first thing (--user/--group; the
  master stays root, as nginx's, to remove its pid file and socket file at exit).  It never imports
  the application: each server process builds its own Server on the master's sockets
  (Server.adopt), importing the app there, so a reload imports the code anew.
* The master keeps its copy of every listener for as long as it runs, so a listener
  outlives any one generation of server processes: connections waiting in a listener's
  queue when a process stops stay there for the next one (a listener closed with
  connections in its queue would reset them).  Slot i's process always adopts the same
  listeners (one for --accept dispatch, one per worker for --accept reuseport).
* Each server process has a readiness pipe to the master: it writes ``ready BANNER`` once its
  workers run, just before it accepts, or ``error MESSAGE`` (a ServerError, something
  the operator must fix) before it exits.
* Signals to the master (README "Signals"): TERM/INT are passed on (each process
  finishes its in-flight responses within --grace; a second one cuts them off: the
  master counts them and sends QUIT_NOW, a signal of its own, for the second); HUP
  starts a new generation on the same sockets and, once every one of its processes is
  ready, stops the old one gracefully (if the new one fails, the old one keeps
  serving, as nginx keeps its old workers on a bad config); USR1 is passed on.
* A process that dies unexpectedly is replaced, with a back-off per slot so that a
  crash loop does not spin.  A failure while the server starts, or an error a serving
  process reports, ends the server with that one line and a non-zero exit.
"""

import ctypes
import logging
import os
import select
import signal
import sys
import time

from . import _sockets
from .config import Config, ConfigError
from .log import logger
from .server import (
    Server,
    ServerError,
    announce,
    bind_another,
    bind_listener,
    open_access_log,
    raise_fd_limit,
    readable_dirs,
)

#: seconds between restarts of a slot whose process keeps dying: doubled per quick death
BACKOFF_MIN, BACKOFF_MAX = 0.1, 10.0
#: seconds a process must live for its slot's back-off to start again from nothing
STABLE = 10.0
#: seconds past --grace before a process that was asked to stop is killed (a stuck handler)
KILL_AFTER = 5.0

#: what the master sends its server processes when the server fails (a process that did
#: not start, a banner that cannot be written): a graceful stop, as TERM, but quiet
FAILED_STOP = signal.SIGQUIT

#: what the master sends its server processes for its second TERM/INT: cut in-flight
#: responses off.  Not the TERM/INT passed on again: two of one signal that reach a process
#: before its Python handler runs are one (the kernel keeps one pending, and CPython runs a
#: handler once for all the deliveries it missed), so a second Ctrl-C that came soon after
#: the first, or while a handler held the GIL, was a graceful stop (the process was killed
#: KILL_AFTER seconds later).  A signal of its own is never merged with the first
QUIT_NOW = signal.SIGUSR2

MASTER_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD)


def log(message, level=logging.INFO):
    """One record of the error log (the master's own messages; log.py's layout)."""
    logger.log(level, "minginx-cffi: %s", message)


def describe_exit(status):
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exited with status %d" % code


class Proc:
    """One server process, as the master sees it."""

    def __init__(self, pid, slot, generation, ready_r):
        self.pid, self.slot, self.generation = pid, slot, generation
        self.ready_r = ready_r  # read end of its readiness pipe (-1 once closed)
        self.ready = False  # it said "ready": its workers run, it accepts
        self.banner = None  # its Server's banner, sent with "ready"
        self.error = None  # the one line it reported before exiting
        self.buf = b""
        self.started = time.monotonic()
        self.kill_at = None  # monotonic seconds: SIGKILL if it still runs then


class Master:
    def __init__(
        self, processes, options, fd=None, uds=None, user=None, group=None, pid_file=None, exits=False
    ):
        self.processes = processes
        self.options = options  # Config() keywords (the CLI's), checked in _open
        self.config = None  # the Config every server process starts from
        self.fd, self.uds, self.user, self.group = fd, uds, user, group
        self.pid_file = pid_file
        # exits: the process ends when run() returns (the CLI), so the signals stay
        # ignored instead of getting back their old dispositions: a HUP, USR1 or second
        # INT that comes while it exits must not turn its exit status into "killed by"
        self.exits = exits
        self.grace = 5.0  # the Config's, once _open made it
        self.listeners = []  # per slot: the listeners its process adopts
        self.uds_bound = None  # (path, inode) of the socket file we made
        self.wrote_pid = False
        self.procs = {}  # pid -> Proc, every process not yet reaped
        self.generation = 0  # the serving generation
        self.next_generation = 1
        self.booting = True  # generation 1 is not all ready yet
        self.reloading = None  # the generation SIGHUP is starting, if any
        self.reload_again = False  # a SIGHUP came during a reload
        self.restarts = {}  # slot -> monotonic time its new process is due
        self.backoff = {}  # slot -> seconds waited before its last restart
        self.stopping = 0  # TERM/INT received (or a failure): 1, 2 for "now"
        self.failure = None  # the line the server ends with
        self.failed_process = False  # a process exited non-zero while stopping
        self.signals = []
        self._wake_r = self._wake_w = -1
        self._old_handlers = {}
        # --stats: every process's counters in one procstats.SharedStats, two banks of
        # `processes` slots: a new generation counts in the bank the serving one does not
        # use, so the one it replaces at a reload keeps its slots while it drains (by
        # generation numbers alone, a failed reload would put the next one in the
        # serving generation's bank: its counts folded while it still publishes them)
        self.shared = None
        self.identity = None  # (_sockets.Identity, dirs it must read): --user/--group
        self.banks = {}  # generation -> its bank (0 or 1)
        self.systemd = None  # _sockets.Notifier: Type=notify's messages (run() makes it)
        self.watcher = None  # _reload.Watcher: --reload's inotify
        self.detailed = set()  # generations whose error's detail was logged

    # -- set-up: everything the master can check, bind and drop before forking ----

    def run(self):
        try:
            # the handlers first: once the pid file is out, a HUP or TERM sent to the pid
            # in it must be handled, never kill the master with the defaults' action
            self._install_signals()
            self.systemd = _sockets.Notifier()
            self._open()
            self._install_wakeup()  # after _open: fds handed in (3, --fd N) are read first
            self._loop()
        finally:
            self._close()
        if self.failure:
            raise ServerError(self.failure)
        if self.failed_process:
            raise ServerError("a server process failed")

    def _open(self):
        """Check every setting (one Config: without the application, so nothing is
        imported here), bind the listeners, write the pid file, prepare the log."""
        try:
            config = self.config = Config(
                **dict(
                    self.options,
                    processes=self.processes,
                    fd=self.fd,
                    uds=self.uds,
                    user=self.user,
                    group=self.group,
                    pid_file=None,  # the master's: no server process writes it
                )
            )
        except ConfigError as e:
            raise ServerError(str(e)) from None
        self.grace = config.grace
        handed = _sockets.systemd_sockets()
        if handed and (self.fd is not None or self.uds is not None):
            raise ServerError(
                "systemd handed in a socket (LISTEN_FDS): --fd and --uds are for starting without it"
            )
        if handed and config.accept == "reuseport":
            raise ServerError(
                "--accept reuseport binds a listener per worker: it cannot be "
                "used with --fd, --uds or sockets handed in by systemd"
            )
        identity = None
        if self.user is not None or self.group is not None:
            identity = _sockets.Identity(self.user, self.group)
        if handed or self.fd is not None or self.uds is not None:
            # one socket, shared by every process (the kernel queues, they take turns)
            if handed:
                sock = handed[0]
            else:
                sock, self.uds_bound = bind_listener(config)
            self.listeners = [[sock]] * self.processes
        else:
            per_process = config.nworkers if config.accept == "reuseport" else 1
            socks = [bind_listener(config)[0]]
            try:
                socks += [bind_another(socks[0], config) for _ in range(self.processes * per_process - 1)]
            except ServerError:
                for s in socks:
                    s.close()
                raise
            self.listeners = [socks[i * per_process : (i + 1) * per_process] for i in range(self.processes)]
        if self.pid_file:
            try:
                with open(self.pid_file, "w") as f:
                    self.wrote_pid = True
                    f.write("%d\n" % os.getpid())
            except OSError as e:
                raise ServerError("cannot write the pid file %s: %s" % (self.pid_file, e.strerror)) from None
        if identity is not None:
            # the server processes drop root as they start (_child); the master keeps it,
            # as nginx's and gunicorn's do, to remove its pid file and socket file at exit
            self.identity = (identity, readable_dirs(config))
        self._prepare_log()
        if config.reload:
            from ._reload import DEFAULT_EXCLUDE, DEFAULT_INCLUDE, Watcher, WatchError

            try:
                self.watcher = Watcher(
                    config.reload_dir or [os.getcwd()],
                    config.reload_include or DEFAULT_INCLUDE,
                    config.reload_exclude or DEFAULT_EXCLUDE,
                )
            except WatchError as e:
                raise ServerError("--reload: %s" % e.strerror) from None
            where = ", ".join(sorted(set(self.watcher.dirs.values()))[:3])
            log(
                "--reload: watching %d directories (%s%s)"
                % (len(self.watcher.dirs), where, ", ..." if len(self.watcher.dirs) > 3 else "")
            )
        raise_fd_limit()  # once, for every process after it
        if config.stats:
            from .procstats import SharedStats

            self.shared = SharedStats(2 * self.processes, config.nworkers)  # before any fork

    def _prepare_log(self):
        """The access log file, made by the master (as nginx's: ngx_reopen_files) and
        given to --user, so that server processes that dropped root can open it, at
        start and at each SIGUSR1 reopen (after logrotate moved it away).  ServerError
        if it cannot be opened."""
        path = self.config.access_log
        if path in (None, "-"):
            return
        fd = open_access_log(path)
        try:
            if self.identity is not None and not self.identity[0].noop:
                identity = self.identity[0]
                uid = identity.pw.pw_uid if identity.pw is not None else -1
                gid = identity.gid if identity.gid is not None else -1
                st = os.fstat(fd)
                if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
                    os.fchown(fd, uid, gid)
        except OSError as e:
            raise ServerError(
                "cannot give the access log %s to %s: %s" % (path, self.identity[0].describe(), e.strerror)
            ) from None
        finally:
            os.close(fd)

    def _install_signals(self):
        self._old_handlers = {s: signal.signal(s, self._on_signal) for s in MASTER_SIGNALS}

    def _install_wakeup(self):
        """The pipe that ends the loop's poll when a signal comes (the ones that came
        before it are in self.signals: the loop handles them before it polls)."""
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _on_signal(self, signum, frame):
        self.signals.append(signum)  # handled by the loop; the wake-up fd ends its poll

    def _close(self):
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        for s, h in self._old_handlers.items():
            # SIG_IGN for SIGCHLD would mean "reap them for me": never for it
            signal.signal(s, signal.SIG_IGN if self.exits and s != signal.SIGCHLD else h)
        self._old_handlers = {}
        if self._wake_r >= 0:
            signal.set_wakeup_fd(self._old_wakeup)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
        for p in self.procs.values():  # only after a failure in the master itself
            try:
                os.kill(p.pid, signal.SIGKILL)
                os.waitpid(p.pid, 0)
            except OSError:
                pass
        self._close_listeners()
        if self.uds_bound is not None:
            _sockets.unlink_unix(*self.uds_bound)
        if self.wrote_pid:
            try:
                os.unlink(self.pid_file)
            except OSError:
                pass

    def _close_listeners(self):
        for s in {id(s): s for socks in self.listeners for s in socks}.values():
            s.close()
        self.listeners = []

    # -- the loop: signals, readiness pipes, exits, restarts -----------------------

    def _loop(self):
        self._handle_signals()  # a TERM while the sockets were bound: no process starts
        if not self.stopping:
            try:
                self._spawn_generation()
            except ServerError as e:
                self._fail(str(e))
        poller = select.poll()
        polled = set()
        while self.procs or (not self.stopping and (self.restarts or self.reloading)):
            fds = {self._wake_r} | {p.ready_r for p in self.procs.values() if p.ready_r >= 0}
            if self.watcher is not None and not self.stopping:
                fds.add(self.watcher.fd)
            for fd in polled - fds:
                poller.unregister(fd)
            for fd in fds - polled:
                poller.register(fd, select.POLLIN)
            polled = fds
            timeout = self._timeout()
            ping = self.systemd.tick()  # WatchdogSec=: the master's loop is alive
            if ping is not None:
                timeout = ping if timeout is None else min(timeout, ping)
            quiet = self.watcher.due() if self.watcher is not None else None  # --reload
            if quiet is not None:
                timeout = quiet if timeout is None else min(timeout, quiet)
            for fd, _ in poller.poll(None if timeout is None else max(0, int(timeout * 1000))):
                if fd == self._wake_r:
                    try:
                        while os.read(fd, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif self.watcher is not None and fd == self.watcher.fd:
                    self.watcher.read()
                else:
                    for p in [p for p in self.procs.values() if p.ready_r == fd]:
                        self._read_pipe(p)
            self._handle_signals()
            self._reap()
            self._reload_on_change()
            self._check_reload()
            self._start_restarts()
            self._kill_overdue()
        # after the last process exited: the server's one table, from every slot
        if self.shared is not None and not self.failure:
            logger.info("%s", self.shared.table())

    def _reload_on_change(self):
        """--reload: a quiet tree after changes is a reload, through SIGHUP's path."""
        if self.watcher is None or self.stopping:
            return
        changed = self.watcher.take()
        if changed:
            first = os.path.relpath(changed[0]) if changed[0].startswith("/") else changed[0]
            more = " and %d more" % (len(changed) - 1) if len(changed) > 1 else ""
            log("--reload: %s%s changed" % (first, more))
            self._reload()

    def _timeout(self):
        """Seconds until the next restart or kill is due (None: only an event wakes us)."""
        due = list(self.restarts.values()) + [p.kill_at for p in self.procs.values() if p.kill_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _read_pipe(self, p):
        try:
            data = os.read(p.ready_r, 4096)
        except BlockingIOError:
            return
        if not data:
            os.close(p.ready_r)
            p.ready_r = -1
        p.buf += data
        while b"\n" in p.buf:
            line, p.buf = p.buf.split(b"\n", 1)
            if line.startswith(b"ready"):
                p.ready = True
                p.banner = line[6:].decode(errors="replace")
            elif line.startswith(b"error ") and p.error is None:
                p.error = line[6:].decode(errors="replace")
            elif line.startswith(b"detail ") and p.generation not in self.detailed:
                # what leads up to the error (an app's frames): once a generation, not
                # once a process (every process of it imports the same app)
                self.detailed.add(p.generation)
                log(unescape(line[7:]), logging.ERROR)

    def _handle_signals(self):
        signals, self.signals = self.signals, []
        for signum in signals:
            if signum in (signal.SIGINT, signal.SIGTERM):
                if not self.stopping:
                    log(
                        "%s, finishing in-flight responses (up to %gs; again to quit now)"
                        % (signal.Signals(signum).name, self.grace)
                    )
                self._stop(signum)
            elif signum == signal.SIGHUP:
                self._reload()
            elif signum == signal.SIGUSR1:
                try:
                    self._prepare_log()  # a new file (logrotate moved the old), the user's
                except ServerError as e:
                    log(str(e), logging.ERROR)
                self._send_all(signal.SIGUSR1)  # the processes reopen their access log

    def _send_all(self, signum):
        for p in self.procs.values():
            try:
                os.kill(p.pid, signum)
            except ProcessLookupError:
                pass

    def _stop(self, signum):
        """TERM/INT, passed on: each process finishes in-flight responses within --grace;
        a second one (QUIT_NOW) makes them cut off at once."""
        if not self.stopping:
            self.systemd.notify("STOPPING=1")
        self.stopping += 1
        self.restarts.clear()
        self.reloading = None
        self._close_listeners()  # the processes hold their own copies until they stop
        for p in self.procs.values():
            # the first stop leaves alone the processes already stopping gracefully (an
            # old generation finishing its responses after a reload): a second signal
            # would tell them to cut their responses off
            if self.stopping > 1 or p.kill_at is None:
                try:
                    os.kill(p.pid, signum if self.stopping == 1 else QUIT_NOW)
                except ProcessLookupError:
                    pass
        kill_at = time.monotonic() + (self.grace if self.stopping == 1 else 0) + KILL_AFTER
        for p in self.procs.values():
            p.kill_at = kill_at if p.kill_at is None else min(p.kill_at, kill_at)

    def _fail(self, message):
        """End the server with this line (the first failure's), stopping every process
        (gracefully, and without its own shutdown table: the failure is the news)."""
        if self.failure is None:
            self.failure = message
        if not self.stopping:
            self._stop(FAILED_STOP)

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            p = self.procs.pop(pid, None)
            if p is None:
                continue
            while p.ready_r >= 0:  # what it said before it went, then the pipe is done
                before = p.ready_r
                self._read_pipe(p)
                if p.ready_r == before:  # a process of its own holds the pipe open
                    os.close(p.ready_r)
                    p.ready_r = -1
            self._exited(p, status)

    def _exited(self, p, status):
        code = os.waitstatus_to_exitcode(status)
        how = "process %d %s" % (p.pid, describe_exit(status))
        if p.generation == self.reloading:
            self._reload_failed(p.error or how)
            return
        if p.generation != self.generation:
            return  # an old generation drained, or a failed reload's process
        if self.stopping:
            if p.error:
                self._fail(p.error)
            elif code > 0:
                self.failed_process = True
            return
        if self.booting or (p.error and p.ready):
            # a start-up failure (or a serving process's own error): the operator must fix it
            self._fail(p.error or "a server process failed to start: %s" % how)
            return
        now = time.monotonic()
        if now - p.started >= STABLE:
            delay = 0.0
        else:
            delay = min(BACKOFF_MAX, max(BACKOFF_MIN, 2 * self.backoff.get(p.slot, 0.0)))
        self.backoff[p.slot] = delay
        self.restarts[p.slot] = now + delay
        log(
            "%s%s; starting another in %gs" % (how, ": " + p.error if p.error else "", delay), logging.WARNING
        )

    def _start_restarts(self):
        now = time.monotonic()
        for slot, due in sorted(self.restarts.items()):
            if due > now or self.stopping:
                continue
            del self.restarts[slot]
            try:
                self._spawn(slot, self.generation)
            except ServerError as e:
                delay = min(BACKOFF_MAX, max(BACKOFF_MIN, 2 * self.backoff.get(slot, 0.0)))
                self.backoff[slot] = delay
                self.restarts[slot] = now + delay
                log("%s; trying again in %gs" % (e, delay), logging.WARNING)

    def _kill_overdue(self):
        now = time.monotonic()
        for p in self.procs.values():
            if p.kill_at is not None and now >= p.kill_at:
                log(
                    "process %d still runs %gs past its grace: killing it" % (p.pid, KILL_AFTER),
                    logging.WARNING,
                )
                p.kill_at = None
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # -- generations: the first one, and SIGHUP's ----------------------------------

    def _spawn_generation(self):
        """Fork one process per slot as a new generation.  A failed fork takes the
        generation's other processes down with it and raises ServerError."""
        generation, self.next_generation = self.next_generation, self.next_generation + 1
        # --stats: the bank the serving generation does not count in (a failed reload's
        # generation counts in that one too, and is gone before the next reload starts)
        self.banks = {
            g: b
            for g, b in self.banks.items()
            if g == self.generation or any(p.generation == g for p in self.procs.values())
        }
        self.banks[generation] = 1 - self.banks.get(self.generation, 1)
        if self.generation == 0:
            self.generation = generation
        try:
            for slot in range(self.processes):
                self._spawn(slot, generation)
        except ServerError:
            for p in [p for p in self.procs.values() if p.generation == generation]:
                os.kill(p.pid, signal.SIGKILL)
            raise
        return generation

    def _reload(self):
        """SIGHUP: a new generation on the same sockets; the old one stops once it is ready."""
        if self.stopping or self.generation == 0:
            return  # nothing started yet: the first generation imports the code as it is
        if (
            self.booting
            or self.reloading is not None
            or any(p.generation != self.generation for p in self.procs.values())
        ):
            # after this start (or reload) is done, and the generation before has drained
            # (the new one will count in its stats slots)
            self.reload_again = True
            return
        log("SIGHUP: starting %d new server process%s" % (self.processes, "es" if self.processes > 1 else ""))
        self.systemd.reloading()
        try:
            self.reloading = self._spawn_generation()
        except ServerError as e:
            log("reload failed: %s; the old processes keep serving" % e, logging.ERROR)
            self.systemd.notify("READY=1", "STATUS=reload failed: %s" % e)

    def _check_reload(self):
        if self.stopping:
            return
        if self.booting:
            current = [p for p in self.procs.values() if p.generation == self.generation]
            if len(current) == self.processes and all(p.ready for p in current):
                self.booting = False
                # the banner once every process serves: "serving" means all of them
                banner = min(current, key=lambda p: p.slot).banner
                try:
                    announce(banner)
                except OSError as e:  # no one to tell we serve: stop, say why
                    self._fail("cannot write to stdout: %s" % e.strerror)
                    return
                self.systemd.notify("READY=1", "STATUS=%s" % banner, "MAINPID=%d" % os.getpid())
            elif self.reload_again:
                return
        if self.reloading is not None:
            new = [p for p in self.procs.values() if p.generation == self.reloading]
            if len(new) < self.processes or not all(p.ready for p in new):
                return
            old = [p for p in self.procs.values() if p.generation == self.generation]
            self.generation, self.reloading = self.reloading, None
            self.restarts.clear()  # slots waiting for a restart are served by the new ones
            self.backoff.clear()
            log(
                "reloaded: processes %s serve; %s finish their responses and stop"
                % (" ".join(str(p.pid) for p in new), " ".join(str(p.pid) for p in old) or "no old ones")
            )
            self.systemd.notify("READY=1", "STATUS=reloaded")
            kill_at = time.monotonic() + self.grace + KILL_AFTER
            for p in old:
                p.kill_at = kill_at
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        if self.reload_again and not self.booting and self.reloading is None:
            self.reload_again = False
            self._reload()

    def _reload_failed(self, message):
        log("reload failed: %s; the old processes keep serving" % message, logging.ERROR)
        self.systemd.notify("READY=1", "STATUS=reload failed: %s" % message)
        for p in self.procs.values():
            if p.generation == self.reloading:
                p.kill_at = time.monotonic() + self.grace + KILL_AFTER
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self.reloading = None

    # -- one server process --------------------------------------------------------

    def _spawn(self, slot, generation):
        stats_slot = None
        if self.shared is not None:
            # the slot's last process (a drained generation's, or the one being restarted)
            # is gone: its counts move to the retired row, the slot starts from zero
            stats_slot = self.banks[generation] * self.processes + slot
            self.shared.fold([stats_slot])
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(ready_r, False)
        # signals stay blocked across fork until the child has its own dispositions:
        # the master's handler must never run in a child
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS + (FAILED_STOP, QUIT_NOW))
        try:
            pid = os.fork()
        except OSError as e:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            os.close(ready_r)
            os.close(ready_w)
            raise ServerError("fork: %s" % e.strerror) from None
        if pid == 0:
            self._child(slot, ready_r, ready_w, blocked, stats_slot)  # never returns
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(ready_w)
        self.procs[pid] = Proc(pid, slot, generation, ready_r)

    def _child(self, slot, ready_r, ready_w, mask, stats_slot):
        code = 1
        master = os.getppid()
        try:
            # terminal signals (Ctrl-C) reach the master only; it passes them on
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                signal.signal(s, signal.SIG_DFL)
            # HUP is the master's; USR1 waits for the Server's own handler (access log)
            for s in (signal.SIGHUP, signal.SIGUSR1):
                signal.signal(s, signal.SIG_IGN)
            holder = []

            def stop_for_failure(signum, frame):
                """FAILED_STOP: the server failed elsewhere; stop gracefully, no table."""
                if not holder:
                    raise SystemExit(0)  # still starting: nothing served yet
                # quiet before the handler runs: the master speaks for its processes, and
                # a FAILED_STOP that lands between Server() and serve_forever(quiet=True)
                # found _quiet still False and logged "SIGTERM, finishing ..." beside the
                # master's one line (test_a_start_up_failure_is_one_line_and_a_nonzero_exit
                # failed once in five whole-suite runs)
                holder[0]._quiet = True
                holder[0]._no_summary = True
                holder[0]._request_stop(1, "SIGTERM")

            def quit_now(signum, frame):
                """QUIT_NOW: the master's second TERM/INT; cut in-flight responses off."""
                if not holder:
                    raise SystemExit(0)  # still starting: nothing served yet
                # whether or not the TERM/INT before it was handled yet (serve_forever
                # cuts off once _stop_requested > 1, checked before it accepts)
                holder[0]._stop_requested = max(holder[0]._stop_requested, 2)

            signal.signal(FAILED_STOP, stop_for_failure)
            signal.signal(QUIT_NOW, quit_now)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if self.identity is not None:
                # --user/--group: drop root before anything of the server runs here (and
                # before PR_SET_PDEATHSIG, which a change of credentials clears)
                identity, dirs = self.identity
                identity.switch(dirs)
            stop_with_parent(master)
            os.close(self._wake_r)
            os.close(self._wake_w)
            os.close(ready_r)  # the master's end of this process's own pipe
            if self.watcher is not None:
                os.close(self.watcher.fd)  # the master's alone (--reload)
            for p in self.procs.values():
                if p.ready_r >= 0:
                    os.close(p.ready_r)
            mine = self.listeners[slot]
            for socks in self.listeners:
                for s in socks:
                    if all(s is not m for m in mine):
                        s.close()

            def ready():
                tell(ready_w, b"ready %s\n" % server.banner().encode(errors="replace"))

            # checked anew here (the error pages read again at a reload), and the app imported
            server = Server(
                self.config.replace(),
                stats_slot=(self.shared, stats_slot) if stats_slot is not None else None,
            )
            holder.append(server)
            server.adopt(mine)
            server.serve_forever(quiet=True, ready=ready)
            code = 0
        except ServerError as e:
            if e.detail:
                tell(ready_w, b"detail %s\n" % escape(e.detail))
            tell(ready_w, b"error %s\n" % str(e).replace("\n", " ").encode(errors="replace"))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            logger.critical("minginx-cffi: server process %d failed", os.getpid(), exc_info=True)
        finally:
            # Whatever comes now, this process ends here: a FAILED_STOP whose handler
            # raises SystemExit during the flush (another process failed at the same
            # moment) would otherwise unwind into the master's own frames, forked with it
            # (a [critical] "uncaught exception" from a copy of the master).
            try:
                for s in (FAILED_STOP, QUIT_NOW):
                    signal.signal(s, signal.SIG_IGN)
                for f in (sys.stdout, sys.stderr):
                    try:
                        f.flush()
                    except (OSError, ValueError):
                        pass
            finally:
                os._exit(code)


def stop_with_parent(master):
    """A master killed outright (SIGKILL, the OOM killer) cannot stop its processes: the
    kernel sends them SIGTERM instead (prctl PR_SET_PDEATHSIG), a graceful stop."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != master:  # it died before the prctl: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)


def escape(text):
    """Text as one line of the readiness pipe, its newlines as NULs (unescape undoes it)."""
    return text.replace("\0", "?").encode(errors="replace").replace(b"\n", b"\0")


def unescape(data):
    return data.replace(b"\0", b"\n").decode(errors="replace")


def tell(fd, message):
    """A line to the master; a master that is gone can no longer listen."""
    try:
        os.write(fd, message)
    except OSError:
        pass


def serve(processes=1, fd=None, uds=None, user=None, group=None, pid_file=None, **options):
    """``minginx-cffi serve``: a master process and ``processes`` server processes."""
    Master(processes, options, fd=fd, uds=uds, user=user, group=group, pid_file=pid_file, exits=True).run()
