/* minginx.h - the contract between the C engine and Python (cffi reads this file).
 *
 * This header holds only what cffi's cdef parser understands: opaque types,
 * plain structs, enums, integer #defines and prototypes.  minginx_cffi/_build.py
 * drops the other preprocessor lines and turns every #define value into "..."
 * so the compiler, not a second copy in Python, decides the numbers.
 *
 * Return contract, for every function here unless it says otherwise:
 *   >= 0 success (a count or a handle index), < 0 a negated errno value.
 * Pointer-returning constructors return NULL and store -errno in *err.
 */
#ifndef MINGINX_H
#define MINGINX_H

#include <stddef.h>
#include <stdint.h>

#define MG_VERSION_MAJOR 0
#define MG_VERSION_MINOR 1

#define MG_DEFAULT_STACK_SIZE (64 * 1024) /* bytes, per coroutine */
#define MG_MIN_STACK_SIZE     (16 * 1024)
#define MG_MAX_WORKERS        256
#define MG_EXTERN_PYTHON      extern

/* Ready-queue policy of a worker (the seed's "Worker policy"). */
typedef enum {
    RDY_FIFO = 0, /* oldest ready coroutine runs first: fair */
    RDY_LIFO = 1, /* newest runs first: its data is still in cache */
    RDY_POLICY_MAX
} mg_policy;

/* How coroutines switch (--switch): glibc's swapcontext, or a few
 * instructions that skip its signal-mask system call (x86-64). */
typedef enum { MG_SWITCH_UCONTEXT = 0, MG_SWITCH_FAST = 1, MG_SWITCH_MAX } mg_switch_mode;

/* Who accepts (--accept): the main thread, dispatching down pipes as in the
 * seed, or each worker on its own SO_REUSEPORT listener. */
typedef enum { MG_ACCEPT_DISPATCH = 0, MG_ACCEPT_REUSEPORT = 1, MG_ACCEPT_MAX } mg_accept_mode;

/* How a worker does its I/O (--io): epoll readiness then the system call
 * (the seed), or io_uring submissions and completions (csrc/uring.c). */
typedef enum { MG_IO_EPOLL = 0, MG_IO_URING = 1, MG_IO_MAX } mg_io;

/* The access log's line format (--access-log-format). */
typedef enum {
    MG_LOG_COMBINED = 0, /* nginx's combined, byte for byte */
    MG_LOG_JSON = 1,     /* one JSON object a line: combined's fields and request_time */
    MG_LOG_FORMAT_MAX
} mg_log_format;

/* Why a coroutine gave the CPU back to schedule(): the coroutine-to-loop
 * protocol.  Counted per reason in mg_stats. */
typedef enum {
    MG_YIELD_READY = 0,  /* still runnable: just let the others run */
    MG_YIELD_READ = 1,   /* recv would block: wake me when the fd is readable */
    MG_YIELD_WRITE = 2,  /* send would block: wake me when the fd is writable */
    MG_YIELD_PYTHON = 3, /* my Python handler: run it on the worker's own stack, or wait
                            for a handler thread's mg_call_post() (deferred) */
    MG_YIELD_MAX
} mg_yield;

/* --error-page CODE=PATH: the body of the error responses the server itself
 * makes with that status (static.c send_error), read once at start.  The
 * Content-Type comes from path's extension (cache.c's table). */
typedef struct {
    int status;       /* 400..599 */
    const char *path; /* relative to the root, for its extension */
    const char *body;
    size_t body_len; /* bytes, at most MG_ERROR_PAGE_MAX */
} mg_error_page;
#define MG_ERROR_PAGE_MAX  (1 << 20)
#define MG_ADD_HEADERS_MAX 1024 /* bytes of --header lines (they share the 2 KiB head area) */

/* One --forwarded-allow-ips entry: an address and a prefix length. */
typedef struct {
    int family;             /* 4 or 6 */
    int prefix;             /* bits: 0..32 or 0..128 */
    unsigned char addr[16]; /* network byte order; IPv4 in the first 4 */
} mg_cidr;

/* Server-wide settings, filled by Python before mg_server_new(). */
typedef struct {
    const char *root;            /* document root (a directory) */
    int policy;                  /* mg_policy */
    int stack_size;              /* bytes per coroutine stack, page-rounded */
    int serve_dotfiles;          /* 0: "/.git", "/.env" ... are 404 */
    int follow_symlinks;         /* 0: symlinks may not leave the root */
    int header_timeout_ms;       /* a whole request header must arrive in this */
    int keepalive_timeout_ms;    /* an idle keep-alive connection lives this long */
    int send_timeout_ms;         /* a send making no progress is dropped after this */
    int max_body;                /* bytes of request body read and discarded */
    int gzip_static;             /* serve FILE.gz to clients that accept gzip */
    int open_file_cache;         /* entries per worker (0: no cache) */
    int small_file_max;          /* files up to this many bytes are kept in memory */
    int app_id;                  /* >= 0: requests go to Python app number app_id first */
    int static_files;            /* 1: serve root's files (and requests Python passes on) */
    int max_connections;         /* open in this process, all workers: more get 503 and close (0: none) */
    int trace;                   /* 1: record the happy path's steps in per-worker rings */
    int stats_endpoint;          /* 1: GET /_minginx/stats and /_minginx/trace answer JSON */
    int switch_mode;             /* mg_switch_mode */
    int accept_mode;             /* mg_accept_mode */
    int io;                      /* mg_io */
    int handler_timeout_ms;      /* a deferred Python call not answered in this gets its client
                                    a 504 and the connection closed (0: no limit) */
    int handler_timeout_head;    /* 1: the timeout runs only until the response head (ASGI: a
                                    stream may wait for its app's next event, as SSE does) */
    int access_log;              /* 1: a line per response to access_log_fd (accesslog.c) */
    int access_log_fd;           /* duplicated by mg_server_new: the caller keeps its own */
    const char *access_log_path; /* what mg_server_reopen_log() opens again (NULL: never) */
    int access_log_format;       /* mg_log_format */
    /* in front of an app (front.c); the server copies what these point to */
    const char *add_headers; /* --header: "Name: value\r\n" lines for static answers with
                                    200/201/204/206/301/302/303/304/307/308, made by
                                    mg_static_fields (NULL: none) */
    const mg_error_page *error_pages;
    int error_pages_n;
    int proxy_headers;              /* 1: X-Forwarded-For/-Proto, Forwarded from trusted peers */
    const mg_cidr *forwarded_allow; /* the trusted peers (--forwarded-allow-ips) */
    int forwarded_allow_n;
    int forwarded_allow_all; /* "*": every peer is trusted */
} mg_config;

/* Per-worker counters, kept by the worker thread, copied out on request. */
typedef struct {
    uint64_t connections;      /* connections handed to this worker */
    uint64_t requests;         /* responses started */
    uint64_t bytes_out;        /* response bytes written (headers + bodies) */
    uint64_t switches;         /* context switches into coroutines */
    uint64_t yields[4];        /* by mg_yield reason: ready, read, write, python */
    uint64_t wakeups;          /* coroutines woken by wake_fd */
    uint64_t timeouts;         /* coroutines woken by an expired timer */
    uint64_t ready_max;        /* deepest the ready queue has been */
    int64_t coroutines_alive;  /* created and not yet destroyed */
    uint64_t coroutines_total; /* created since start */
    uint64_t stack_pool;       /* stacks parked in the pool for reuse */
    uint64_t stacks_mapped;    /* stacks currently mmap'ed (pool + live) */
    uint64_t cache_hits;       /* requests answered from the open-file cache */
    uint64_t cache_misses;     /* requests that had to open the file */
    uint64_t cache_entries;    /* entries in the open-file cache now */
    uint64_t py_batches;       /* times the worker took the GIL to run handlers */
    uint64_t py_calls;         /* handler calls made in those batches */
    uint64_t rejected;         /* connections turned away by --max-connections */
    uint64_t handler_timeouts; /* deferred calls given up on after handler_timeout_ms (504) */
    uint64_t log_lines;        /* access-log lines written into this worker's buffers */
    uint64_t log_dropped;      /* lines dropped: the writer was that far behind, or write()
                                  * refused them (counted as the worker next runs; accesslog.c) */
    uint64_t parked;           /* idle keep-alive connections parked without a coroutine now */
} mg_stats;

typedef struct mg_server mg_server;
typedef struct mg_worker mg_worker;

/* ---- --processes: one server's counters over several processes ----
 * A MAP_SHARED region made before fork (minginx_cffi/procstats.py: SharedStats)
 * holds nslots slots of nworkers mg_stats each (slot s, worker i at
 * [s * nworkers + i]), then nworkers mg_stats of the processes that have exited
 * (SharedStats.fold).  Shared, each worker copies its counters into its entry
 * once per loop iteration, before it sleeps in epoll_wait, and when it stops:
 * the hot path's counters stay plain increments in the worker's own memory.
 * GET /_minginx/stats then shows every slot and the total.  Call before the
 * workers run; the region must outlive the server. */
int mg_server_share_stats(mg_server *srv, mg_stats *region, int nslots, int nworkers, int slot);

/* ---- the error log (csrc/log.c; minginx_cffi/log.py writes the same layout) ---- */
typedef enum { /* the numbers are Python's logging levels */
               MG_LOG_DEBUG = 10,
               MG_LOG_INFO = 20,
               MG_LOG_WARNING = 30,
               MG_LOG_ERROR = 40,
               MG_LOG_CRITICAL = 50
} mg_log_level;
/* Records below level are not written (--log-level).  Call before the workers run. */
void mg_log_set_level(int level);

/* ---- Python handlers ----
 * A coroutine that needs Python fills an mg_pycall and yields MG_YIELD_PYTHON.
 * After schedule() the worker, on its own stack, passes every pending call
 * to mg_py_batch() (one GIL acquisition per batch), then resumes the
 * coroutines, which send what Python produced.
 *
 * Deferred calls: during mg_py_batch Python may set c->deferred = 1 for a call
 * it will answer later (on a handler thread, an event loop...).  The worker
 * then leaves that coroutine parked.  Once the round's answer is filled in
 * (mg_call_start / mg_call_chunk / fallthrough / more, as inline), Python
 * calls mg_call_post(c), once per deferred round, from any thread: the call
 * goes onto its worker's completion list, an eventfd wakes the worker, and
 * the coroutine resumes there.  Every round (START, NEXT, ABORT) may be
 * deferred on its own.  Until it posts, Python may read and write the call as
 * inline; after it, not at all. */
typedef enum {
    MG_PY_START = 0, /* a new request: run the handler, start the response */
    MG_PY_NEXT = 1,  /* a streamed response: produce the next piece */
    MG_PY_ABORT = 2, /* the client is gone: close the response's iterator */
    MG_PY_OP_MAX
} mg_py_op;

/* flags of mg_call_start().  Framing (Content-Length or chunked) and
 * Connection are decided by the protocol module (h1.c), never taken from a
 * handler's header list. */
#define MG_RESP_STREAM 1 /* more body follows in later rounds (mg_call_chunk) */
#define MG_RESP_CLOSE  4 /* close the connection after this response */

/* An output buffer: bounded, growable where it owns its memory, never
 * overflowing.  A write that does not fit sets err and writes nothing, so a
 * truncated head can never reach the wire (response.c: buf_*). */
typedef struct {
    char *p;
    size_t len, cap; /* bytes */
    int _heap;       /* p is malloc'ed by the buffer and may grow */
    int err;         /* a write did not fit: the contents must not be sent */
} mg_buf;

typedef struct {
    uint64_t id; /* this request, unique within the worker */
    int op;      /* mg_py_op */
    int worker;  /* index of the worker making the call */
    /* The request: views into the connection's buffer, valid only while
     * Python runs for this call. */
    const char *method;
    int method_len;
    const char *path; /* as sent: still percent-encoded */
    int path_len;
    const char *query;
    int query_len;
    const char *body;
    size_t body_len;
    int minor_version; /* HTTP/1.<minor> */
    int num_headers;   /* read them with mg_call_header() */
    char peer[48];     /* client address, text: the peer's, or with --proxy-headers
                                    the forwarded one (front.c request_client) */
    int peer_port;     /* 0 when the address was forwarded */
    int https;         /* the client's scheme: 1 https, 0 http */
    int server_port;
    /* Python's answer */
    int fallthrough;   /* 1: not mine, let the static files answer */
    int more;          /* set by mg_call_*: another MG_PY_NEXT round is wanted */
    const char *error; /* why mg_call_start/mg_call_chunk refused or cut the
                                    response (static text), else NULL */
    int64_t length;    /* the handler's Content-Length, -1 if none */
    uint64_t sent;     /* body bytes accepted so far */
    int _started, _last, _keep_alive, _head_only, _no_body;
    mg_buf _out;        /* this round's answer: the first holds [reason][fields][body], the rest body */
    size_t _reason_len; /* bytes of the reason at the start of _out (0: the standard phrase) */
    size_t _body_at;    /* where the body begins in _out (after the reason and the fields) */
    int _nfields;       /* fields (fields_check's "name\0value\0" block) after the reason */
    void *_co;
    /* deferral: deferred is set by Python in mg_py_batch; the rest is the worker's */
    int deferred;     /* 1: Python answers this round later, with mg_call_post() */
    int _pending;     /* a deferred round not yet posted back (worker thread only) */
    int _orphan;      /* the coroutine gave up on it (handler timeout, shutdown):
                                    the late answer is dropped and the buffer freed */
    int _fresh;       /* mg_call_start ran this round: the coroutine responds */
    int _status;      /* the status mg_call_start checked */
    void *_worker;    /* mg_worker: whose completion list mg_call_post uses */
    void *_next_post; /* completion-list link */
    char *_body_buf;  /* an orphan's request body (co->body_buf), freed with it */
} mg_pycall;

/* Implemented in Python (minginx_cffi/_bridge.py); the build script turns
 * MG_EXTERN_PYTHON into cffi's extern "Python+C". */
MG_EXTERN_PYTHON int mg_py_batch(int app_id, mg_pycall **calls, int n);
/* A notice, not a round: the client of a parked deferred call hung up
 * (EPOLLRDHUP/HUP/ERR on its socket).  The round is still to be posted; the
 * answer's send will fail and close.  Called by the worker loop, on its own
 * stack, holding the GIL for this one call (a rare event); may come twice. */
MG_EXTERN_PYTHON void mg_py_gone(int app_id, int worker, uint64_t id);

/* Header field i of the request (0 <= i < num_headers). */
int mg_call_header(mg_pycall *c, int i, const char **name, size_t *name_len, const char **value,
                   size_t *value_len);
/* All the header fields at once, as "name\0value\0" pairs in the order sent
 * (names lower-cased if lower), into out (cap bytes: MG_HEADERS_CAP always
 * suffices).  Returns the bytes written, or -ENOSPC.  One call instead of
 * one mg_call_header per field: what a Python handler reads per request. */
#define MG_HEADERS_CAP 32768
int mg_call_headers(mg_pycall *c, char *out, size_t cap, int lower);
/* Start the response.  headers holds n fields as "name\0value\0" pairs (a NUL
 * cannot occur in a valid field, so a name or value holding one is seen as
 * a count mismatch).  The response writer checks the status (200..599), the
 * reason (HTAB / SP / VCHAR / obs-text; empty: the standard phrase), each
 * name (a token) and value (no CTL but HTAB), refuses framing of the
 * handler's own (Transfer-Encoding, differing Content-Lengths), honours
 * "Connection: close", drops the fields the server owns (Connection,
 * Keep-Alive, Date, Server ...), and writes the framing itself.
 * Returns 0; 1 when sent but the body disagreed with Content-Length (cut to
 * it, or short: the connection closes; c->error says which); -EINVAL when
 * refused (c->error says why; nothing is written: answer 500 instead);
 * -ENOMEM. */
int mg_call_start(mg_pycall *c, int status, const char *reason, size_t reason_len, const char *headers,
                  size_t headers_len, int n, const char *body, size_t body_len, int flags);
/* Another piece of a streamed body; last = 1 ends it.  Returns as
 * mg_call_start; on 1 the stream is over (more = 0): close the iterator. */
int mg_call_chunk(mg_pycall *c, const char *data, size_t len, int last);

/* Hand a deferred round back to its worker (any thread; cffi releases the
 * GIL around it).  Lock-protected list + eventfd, written only when the list
 * was empty, so a burst of posts costs the worker one wake-up.  Returns 0. */
int mg_call_post(mg_pycall *c);
/* mg_call_post for each of n calls, in one C call: an event loop answering a
 * burst releases the GIL once for it, not once per round (every GIL release
 * while a worker waits for the GIL is a thread handoff).  Returns 0. */
int mg_call_post_many(mg_pycall **calls, int n);

/* --header values checked as a handler's fields are (response.c fields_check),
 * and none the static responses write themselves (Content-Type, ETag,
 * Content-Range ...): block holds n fields as "name\0value\0" pairs; out gets
 * them as "Name: value\r\n" lines.  Returns 0; -EINVAL with *why (static
 * text); -ENOSPC when out_cap (or MG_ADD_HEADERS_MAX) is too small. */
int mg_static_fields(const char *block, size_t block_len, int n, char *out, size_t out_cap, size_t *out_len,
                     const char **why);

/* ---- server: shared, read-only configuration plus the acceptor ---- */
mg_server *mg_server_new(const mg_config *cfg, int *err);
void mg_server_free(mg_server *srv);
/* The settings srv runs with: its copy of the mg_config it was made from.  root,
 * add_headers and forwarded_allow point to the server's own copies; error_pages
 * is NULL once copied (error_pages_n still counts them).  Read by
 * tests/test_config.py, which walks config.OPTIONS. */
const mg_config *mg_server_config(const mg_server *srv);
/* Create worker number `index` and attach it to srv (dispatch targets). */
mg_worker *mg_worker_new(mg_server *srv, int *err);
void mg_worker_free(mg_worker *w);
/* The acceptor: accept on listen_fd and dispatch() each connection to the
 * workers round-robin.  Blocks in epoll_wait; returns 0 when wake_fd becomes
 * readable (a signal arrived or Python asked it to return), leaving its bytes
 * unread: Python counts the signals in them. */
int mg_accept_loop(mg_server *srv, int listen_fd, int wake_fd);
/* The access log's writer: flush what is queued to the file, then open
 * cfg.access_log_path again and write there (logrotate's SIGUSR1, as nginx).
 * Any thread; returns at once (the writer does it).  0, or -EINVAL when the
 * server has no access log to a path. */
int mg_server_reopen_log(mg_server *srv);

/* ---- worker ---- */
/* The worker loop; runs on its own thread until stopped.  Returns 0. */
int mg_worker_run(mg_worker *w);
/* Ask a worker to stop: graceful (finish in-flight responses, close idle
 * connections) or not (destroy every coroutine now).  Thread-safe. */
int mg_worker_stop(mg_worker *w, int graceful);
/* --accept reuseport: this worker accepts on its own listening socket (one
 * per worker, all bound with SO_REUSEPORT) instead of reading a dispatch pipe.
 * Call before mg_worker_run. */
int mg_worker_listen(mg_worker *w, int listen_fd);
void mg_worker_stats(mg_worker *w, mg_stats *out);
/* Can this process use io_uring (--io uring)?  Sets up a ring and drops it:
 * 0 and *setup_flags the IORING_SETUP_SINGLE_ISSUER (4096) and
 * IORING_SETUP_DEFER_TASKRUN (8192) bits the kernel took, or -errno:
 * -ENOSYS no io_uring (or a seccomp filter), -EPERM kernel.io_uring_disabled,
 * -EOPNOTSUPP older than Linux 5.11.  (MINGINX_TEST_NO_URING=1: -ENOSYS.) */
int mg_io_uring_probe(unsigned *setup_flags);

/* ---- the trace: the seed's happy path, step by step ----
 * With cfg.trace, each worker (and the acceptor) writes one record per step
 * into its own ring buffer; Python drains the rings and prints them
 * (minginx-cffi serve --trace).  Off, each step costs one predictable branch. */
typedef enum {
    MG_EV_ACCEPT = 0, /* acceptor: accept4() returned fd */
    MG_EV_DISPATCH,   /* acceptor: fd written down worker arg's pipe */
    MG_EV_FD_BATCH,   /* worker: fd read from the pipe into fd_batch */
    MG_EV_COROUTINE_CREATE,
    MG_EV_ADD_TO_READY,
    MG_EV_SCHEDULE, /* schedule() swaps into the coroutine */
    MG_EV_TRAMPOLINE_START,
    MG_EV_ENTRY,        /* the coroutine's entry (conn_entry) begins */
    MG_EV_YIELD,        /* arg: the mg_yield reason (a read's wait is MG_EV_RECV_ASYNC's) */
    MG_EV_WAKE_FD,      /* arg: the epoll events */
    MG_EV_HANDLER_DONE, /* arg: the response's status; text: its method and path */
    MG_EV_FINISHED,     /* trampoline_start: finished = 1 */
    MG_EV_COROUTINE_DESTROY,
    MG_EV_WAKE_PYTHON, /* worker: a deferred Python round was posted back; arg: op */
    MG_EV_PARK,        /* an idle connection gives its coroutine back; arg: requests so far */
    MG_EV_UNPARK,      /* input on a parked connection: a coroutine again; arg: epoll events */
    MG_EV_SUBMIT,      /* --io uring: a coroutine queued an SQE; arg: IORING_OP_* */
    MG_EV_COMPLETE,    /* --io uring: its CQE came (the counterpart of wake_fd); arg: res */
    /* arg of the three: bytes moved (recv_async: 0 at EOF), or -errno; -EAGAIN
     * (recv_async only) is the read's wait: "recv_async -> EAGAIN, yield (read)" */
    MG_EV_RECV_ASYNC,
    MG_EV_SEND_ASYNC,
    MG_EV_SENDFILE_ASYNC,
    MG_EV_PARSE_HTTP,   /* arg: 0, or the status a bad head is answered with; text: method, path */
    MG_EV_STATIC_SERVE, /* the static files answer this request */
    MG_EV_RUN_PYTHON,   /* worker: mg_py_batch takes this coroutine's call; arg: calls in the batch */
    MG_EV_MAX
} mg_event;

typedef struct {
    uint64_t t_us; /* CLOCK_MONOTONIC, microseconds */
    uint64_t co;   /* coroutine id (0: none yet) */
    int32_t fd;
    int32_t arg;
    int16_t worker; /* -1: the acceptor */
    uint16_t event; /* mg_event */
    int32_t _pad;
    /* parse_http, handler_done: "METHOD /path", a copy (the request buffer is
     * reused), cut at 63 bytes, printable ASCII only (else '?'); "" for the others */
    char text[64];
} mg_trace_rec;

/* Copy up to max records from ring `ring` (-1: the acceptor's, else a worker
 * index) into out; returns how many.  *dropped grows by records lost to
 * overrun.  Safe while the ring's writer runs (one reader per ring). */
int mg_trace_drain(mg_server *srv, int ring, mg_trace_rec *out, int max, uint64_t *dropped);

/* ---- the coroutine runtime, exposed for its unit tests (tests/test_coroutine.py) ---- */
/* A worker with no thread and no listener: coroutines are run by
 * mg_test_run() on the caller's thread. */
mg_worker *mg_test_worker_new(int policy, int stack_size, int *err);
/* The switch a test worker uses (mg_switch_mode); returns the mode in force. */
int mg_test_worker_switch(mg_worker *w, int mode);
/* Create a coroutine that logs its id to log[], yields `yields` times
 * (MG_YIELD_READY), logs again each time it runs, and finishes. */
int mg_test_spawn(mg_worker *w, int id, int yields, int *log, int log_cap, int *log_len);
/* Create a coroutine that recurses until it has used `bytes` of stack. */
int mg_test_spawn_deep(mg_worker *w, int bytes);
/* Run schedule() until the ready queue is empty; returns switches made. */
int mg_test_run(mg_worker *w);
/* The trace ring's reader against a writer caught mid-record: fills a ring,
 * half-writes the next record, drains; returns how many records drained were
 * not the ones expected (0), or -errno. */
int mg_test_trace_torn(void);

/* ---- HTTP parsing, exposed for parser tests and the fuzzer ---- */
typedef struct {
    int status;     /* 0 = complete, -1 = need more, else HTTP error status */
    int header_len; /* bytes of request line + headers (when complete) */
    int method_len, target_len, minor_version, num_headers;
    int keep_alive;         /* 1 if the connection may be reused after this one */
    int64_t content_length; /* -1 if absent */
    int chunked;
    int path_len, query_len; /* the target's path and query ("" when there is none) */
} mg_parse_result;
/* Parse buf[0..len) as one request head; fills *out.  Returns out->status. */
int mg_parse_request(const char *buf, size_t len, mg_parse_result *out);
/* The header-name matcher (plain: the readable table scan; else the fast one). */
int mg_header_id(const char *name, size_t len, int plain);
/* An HTTP-date (IMF-fixdate, RFC 850 or asctime form) as seconds since the
 * epoch, or -1 if it is not one. */
int64_t mg_parse_http_date(const char *s, size_t len);
/* The chunked decoder as read_body drives it (test hook for tests/test_framing_corpus.py
 * and tests/fuzz_chunked.py): in[0..len) fed step bytes at a time (0: all at once), the
 * unconsumed bytes presented again with the next ones, no body limit.  Returns the
 * decoder's last answer (1 done, 0 needs more, 400 bad) or -ENOMEM; out (len bytes at
 * least) gets the decoded bytes, *consumed the input bytes used. */
int mg_chunked_decode_split(const char *in, size_t len, size_t step, char *out, size_t *out_len,
                            size_t *consumed);
/* A handler's head as mg_call_start checks and writes it (test hook for
 * tests/test_response_writer.py and tests/fuzz_response.py): head_check_status,
 * then the status line and h1.c's field lines of fields_check's n fields of block
 * ("name\0value\0" each) into out[0..*out_len), *length the Content-Length
 * (-1: none), *close whether a Connection field lists "close".  Returns 0,
 * -EINVAL (refused), or -ENOSPC (out_cap < 64 + reason_len + block_len + 2 * n
 * may not be enough). */
int mg_test_head(int status, const char *reason, size_t reason_len, const char *block, size_t block_len,
                 int n, char *out, size_t out_cap, size_t *out_len, int64_t *length, int *close);

#endif /* MINGINX_H */
