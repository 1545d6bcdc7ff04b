/* internal.h - structures and functions shared by the engine's C files (not seen by cffi).
 *
 * Theory of operation (the seed's "happy path", each step named as in the seed):
 *
 *   acceptor.c  main thread: accept4() a connection, dispatch() its fd down a
 *               worker's pipe (round-robin).
 *   worker.c    worker thread: epoll_wait() returns for the pipe; the fds are
 *               read into fd_batch; coroutine_create() builds a stack for each
 *               and add_to_ready() queues it; schedule() swaps context into it.
 *   coroutine.c trampoline_start() -> entry (conn.c: conn_entry).
 *   io.c        recv_async() finds no data and yields: swapcontext() saves the
 *               stack and registers and returns to schedule().  Data arrives,
 *               epoll reports the fd, wake_fd() moves the coroutine back to the
 *               ready queue.
 *
 * Two seams under io.c, each a table of function pointers chosen once:
 *   transport   a connection's bytes (co->conn->tp: recv, sendv, sendfile or NULL,
 *               cork, shutdown, pending, free).  transport.c holds the plain
 *               socket's; a TLS one would be a second table, and nothing above
 *               io.c would change.  Only the transports call recv, send,
 *               sendmsg, sendfile or shutdown on a connection.
 *   backend     how a worker waits (w->be: wait, poll, park, unpark, ...):
 *               epoll.c (readiness) or uring.c (completions), picked in
 *               worker_alloc, as redis ae.c includes one ae_<api>.c.
 *   conn.c      parse_http() (http.c), the static-file middleware (static.c),
 *               which answers through the request's exchange (exchange.h):
 *               h1.c writes it as HTTP/1.1 and sends it with
 *               send_async()/sendfile_async() (io.c).
 *   coroutine.c the entry returns, trampoline_start() sets finished = 1 and
 *               schedule() calls coroutine_destroy().
 *
 * Threads: one acceptor (Python's main thread, GIL released), N workers.  A
 * worker's state is touched only by its own thread, except the dispatch pipe
 * (written by the acceptor) and the stats (read, racily but untorn, by Python).
 */
#ifndef MINGINX_INTERNAL_H
#define MINGINX_INTERNAL_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <signal.h>
#include <ucontext.h>
#include <sys/epoll.h>
#include <time.h>
#include <pthread.h>
#include "minginx.h"

#define MG_HIDDEN      __attribute__((visibility("hidden")))
#define MG_UNUSED(x)   (void)(x)
#define MG_LIKELY(x)   __builtin_expect(!!(x), 1)
#define MG_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Limits with precedents: nginx large_client_header_buffers is 4 x 8 KiB,
 * h11 caps a head at 16 KiB, node.js at 16 KiB (was 80 KiB). */
#define MG_MAX_REQUEST_LINE 8192  /* bytes; longer is 414 */
#define MG_MAX_HEADER_BYTES 32768 /* bytes of header fields; more is 431 */
#define MG_MAX_HEADERS      100   /* fields; more is 431 */
#define MG_MEMO_PATH_MAX    256   /* bytes of a request path static.c remembers */
#define MG_REQBUF_DATA      (MG_MAX_REQUEST_LINE + MG_MAX_HEADER_BYTES + 4096)
#define MG_FD_BATCH         256       /* fds read from the dispatch pipe at once */
#define MG_DISPATCH_BATCH   64        /* fds the acceptor sends a worker in one write (< PIPE_BUF) */
#define MG_MAX_EVENTS       512       /* epoll events taken per epoll_wait */
#define MG_STACK_POOL_MAX   4096      /* stacks parked per worker */
#define MG_REQBUF_POOL_MAX  256       /* request buffers pooled per worker */
#define MG_POOL_KEEP        32        /* stacks and buffers kept pooled once a burst is over */
#define MG_POOL_TRIM_MS     1000      /* how often the pools are trimmed to MG_POOL_KEEP (worker.c) */
#define MG_DRAIN_IDLE_MS    1000      /* an idle connection at a graceful stop: its last chance (worker.c) */
#define MG_PARK_DELAY_MS    100       /* a keep-alive connection idle this long is parked (worker.c) */
#define MG_SEND_SLICE       (1 << 20) /* bytes sent before letting others run */
#define MG_CORK_BYTES       (256 * 1024) /* head + file bytes sent under TCP_CORK (static.c) */
#define MG_SENDFILE_CHUNK   (256 * 1024) /* bytes per sendfile() call, as lighttpd */
#define MG_ALTSTACK_SIZE    (64 * 1024)  /* the signal stack the guard-page handler runs on */
#if defined(__x86_64__)
#define MG_FAST_SWITCH_AVAILABLE 1 /* coroutine.c: mg_fast_switch */
#else
#define MG_FAST_SWITCH_AVAILABLE 0
#endif

/* The last Host value that passed the authority check, per worker: the same
 * bytes again (every request of a site names its host) are compared, not
 * checked again.  Only a copy of bytes already judged, never a view, and only
 * ever compared: it shows nothing of one request to another. */
#define MG_HOST_MEMO 64
typedef struct {
    uint32_t len; /* 0: empty */
    char host[MG_HOST_MEMO];
} mg_host_memo;

typedef struct mg_coroutine mg_coroutine;
typedef struct mg_reqbuf mg_reqbuf;
typedef struct mg_xstate mg_xstate;

/* The Date field for the current second, per thread that writes heads (a
 * worker's); written by the protocol module (h1.c date_refresh). */
typedef struct {
    time_t sec;    /* the second line is for (0: none yet) */
    int len;       /* bytes of line */
    char line[40]; /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
} mg_date_cache;

/* ------------------------------------------------------------ access log */
#define MG_ALOG_BUF        (64 * 1024) /* bytes per worker buffer */
#define MG_ALOG_FLUSH_MS   150         /* a buffer this old is handed over at the loop's end */
#define MG_ALOG_MAX_QUEUED (4u << 20)  /* bytes queued for the writer; past it lines drop */

typedef struct mg_alog_buf {
    struct mg_alog_buf *next;
    size_t len, cap; /* bytes */
    uint64_t lines;
    int64_t since_ms; /* when its first line went in (CLOCK_MONOTONIC_COARSE) */
    char data[];
} mg_alog_buf;

typedef struct mg_alog mg_alog; /* the writer thread and its queue (accesslog.c) */

/* ---------------------------------------------------------------- timers */
/* Each timer class has a fixed duration, so appending a timer at the tail
 * keeps its list sorted by deadline: arming, disarming and finding the next
 * deadline are all O(1).  (nginx uses a red-black tree because its durations
 * vary; ours do not.) */
typedef enum {
    MG_TIMER_NONE = 0,
    MG_TIMER_HEADER,    /* waiting for the rest of a request head */
    MG_TIMER_KEEPALIVE, /* idle between requests */
    MG_TIMER_SEND,      /* a send that makes no progress */
    MG_TIMER_LINGER,    /* draining input before close */
    MG_TIMER_PYTHON,    /* a deferred Python round: --handler-timeout */
    MG_TIMER_DRAIN,     /* idle at a graceful stop: MG_DRAIN_IDLE_MS to send one more request */
    MG_TIMER_MAX
} mg_timer_class;

typedef struct mg_timer_list {
    mg_coroutine *head, *tail;
    int64_t duration_ms;
} mg_timer_list;

/* ------------------------------------------------------------------ trace */
#define MG_TRACE_RING 16384 /* records per ring, a power of two */

typedef struct {
    mg_trace_rec *recs;
    uint64_t head; /* written by the ring's thread (release) */
    uint64_t tail; /* the reader's cursor */
} mg_trace_ring;

MG_HIDDEN void trace_push(mg_trace_ring *r, int worker, int event, uint64_t co, int fd, int arg);
/* The same with text (at most 63 bytes and a NUL, printable: mg_trace_rec.text). */
MG_HIDDEN void trace_push_text(mg_trace_ring *r, int worker, int event, uint64_t co, int fd, int arg,
                               const char *text);
MG_HIDDEN int trace_ring_init(mg_trace_ring *r);
MG_HIDDEN void trace_ring_free(mg_trace_ring *r);
MG_HIDDEN int trace_find_dispatch(mg_trace_ring *r, int fd, int worker, uint64_t before_us,
                                  mg_trace_rec out[2]);
/* One predictable branch when tracing is off. */
#define TRACE(w, ev, co, fd, arg)                                                                            \
    do {                                                                                                     \
        if (MG_UNLIKELY((w)->trace))                                                                         \
            trace_push(&(w)->ring, (w)->index, (ev), (co) ? (co)->id : 0, (fd), (arg));                      \
    } while (0)
/* A coroutine's step with its text (co: not NULL). */
#define TRACE_TEXT(w, ev, co, arg, text)                                                                     \
    do {                                                                                                     \
        if (MG_UNLIKELY((w)->trace))                                                                         \
            trace_push_text(&(w)->ring, (w)->index, (ev), (co)->id, (co)->conn->fd, (arg), (text));          \
    } while (0)
/* parse_http's step: copies "METHOD /path" into co->trace_req (status 0), or "" (a bad head). */
struct mg_request_s;
MG_HIDDEN void trace_parse(mg_coroutine *co, const struct mg_request_s *req, int status);

/* ------------------------------------------------------------ connections */
/* A connection: what lasts from its accept to its close, whatever coroutine
 * serves it (co->conn).  It lives in its coroutine's region, under the
 * mg_coroutine (coroutine.c coroutine_create_as): one mmap, as a connection
 * has exactly one coroutine at a time, and a park ends that coroutine,
 * handing what must last (fd, transport, id, requests) to an mg_parked.  Its
 * input buffer is co->conn->rb; what a request needs (its parsed head,
 * scratch entry, Python call) is an mg_xstate's, co->xs (http.h); what
 * schedules it is the coroutine's. */
typedef struct mg_conn {
    int fd;                        /* the connection's socket, or -1 */
    const struct mg_transport *tp; /* its transport (w->tp when made): how its bytes move */
    void *tp_ctx;                  /* the transport's state (TLS: its session), NULL for plain */
    int drained;                   /* the transport's last read emptied it and the socket, and
                                    no input was reported since: a read now would only say
                                    EAGAIN (set by the transport's recv, cleared by wake_fd) */
    mg_reqbuf *rb;                 /* the input buffer, held only while a request is in flight */
    uint32_t requests;             /* request heads read on this connection (0: none yet) */
    int park_due;                  /* idle past MG_PARK_DELAY_MS: park at its next EAGAIN */
    int64_t park_deadline_ms;      /* made at an unpark: the parked connection's deadline,
                                    kept should it park again without a request (0: none) */
    uint64_t sent;                 /* bytes sent on this connection (io.c) */
    /* the connection's addresses, looked up once (conn.c: conn_addresses) */
    int addr_known;
    int peer_unix; /* an AF_UNIX peer: peer is "", the log prints "unix:" */
    int peer_port, server_port;
    char peer[48];
    /* THE CLIENT of the request in flight, as handlers and the access log see
     * it: the peer, or with --proxy-headers and a trusted peer what
     * X-Forwarded-For / Forwarded say.  Set once per request, after its head
     * is parsed, by front.c request_client(); read it with conn_client(). */
    int client_known; /* 0: not looked at for this request yet */
    int client_port;  /* 0 when forwarded (as uvicorn: the proxy's port is not the client's) */
    int client_https; /* 1: X-Forwarded-Proto / Forwarded proto said https */
    char client[48];  /* address, text */
} mg_conn;

/* ------------------------------------------------------------ coroutines */
typedef void (*mg_entry_fn)(mg_coroutine *co);

struct mg_coroutine {
    ucontext_t ctx; /* saved registers and stack pointer (--switch ucontext) */
    void *sp;       /* saved stack pointer (--switch fast) */
    struct mg_worker *worker;
    mg_entry_fn entry; /* what trampoline_start() calls */
    void *arg;
    uint64_t id;
    mg_conn *conn;             /* its connection (in its region, below this struct) */
    int finished;              /* set by trampoline_start() when entry returns */
    int waiting;               /* mg_yield it is parked on, -1 when not parked */
    int woken_by;              /* 0, or EPOLL* bits that woke it */
    int timed_out;             /* its timer fired while it waited */
    int idle;                  /* between requests: may be closed at shutdown */
    int io_pending;            /* --io uring: an SQE of ours has no CQE yet (uring.c) */
    int32_t io_res;            /* --io uring: the last CQE's res */
    int io_watch;              /* --io uring: a hang-up poll is armed (uring_watch_hangup) */
    mg_coroutine *next_ready;  /* ready-queue link */
    mg_coroutine *prev, *next; /* the worker's list of live coroutines */
    /* timer: one per coroutine, in at most one class list */
    int timer_class;
    int64_t deadline_ms;
    mg_coroutine *timer_prev, *timer_next;
    /* memory: one mmap holding [guard page][stack][mg_conn] with this struct at the top */
    void *region;
    size_t region_size;
    void *asan_fake_stack; /* ASan's bookkeeping across switches (test-asan builds) */
    unsigned vg_stack;     /* valgrind's id for this stack (0 outside valgrind) */
    /* lazy parking (worker.c: worker_idle_link, idle_sweep): waiting between requests */
    mg_coroutine *idle_prev, *idle_next; /* the worker's idle list, oldest first */
    int64_t idle_since_ms;               /* when it began to wait (w->now_ms) */
    int idle_linked;                     /* on the idle list now */
    /* the request in flight (issue 26 step 4: an exchange's, next) */
    mg_xstate *xs;            /* its own state (http.h), held as long as co->conn->rb */
    struct mg_centry *centry; /* file being sent (cache.c), released by coroutine_destroy */
    int status;               /* status of the last response started (for the trace) */
    /* the access log's view of the response in flight (accesslog.c) */
    uint64_t log_sent0;   /* sent when this request's response began */
    size_t head_bytes;    /* bytes of the response's head (set by the exchange: h1.c account) */
    int64_t log_start_us; /* when the request began (json's request_time) */
    char *body_buf;       /* a request body too large for rb, or chunked (malloc) */
    char trace_req[64];   /* with --trace: "METHOD /path" of the request in flight (trace_parse) */
};

/* An idle keep-alive connection without a coroutine (worker.c: worker_park):
 * what conn_entry needs to go on where it stopped, and its deadline.  The
 * rest (addresses, the access log's fields) is recomputed or per request. */
typedef struct mg_parked {
    struct mg_parked *prev, *next; /* the worker's parked list, in deadline order */
    int64_t deadline_ms;           /* keep-alive (or graceful-stop drain) deadline; INT64_MAX: none */
    uint64_t id;                   /* the connection's id: its coroutines' id in the trace */
    uint32_t requests;             /* request heads read so far */
    int fd;
    const struct mg_transport *tp; /* the connection's transport and its state, kept for the unpark */
    void *tp_ctx;
} mg_parked;

/* ---------------------------------------------------------------- workers */
struct mg_worker {
    struct mg_server *srv;
    int index;
    const struct mg_backend *be;   /* how it waits: epoll.c or uring.c, chosen in worker_alloc */
    const struct mg_transport *tp; /* the transport its new connections get (plain) */
    int epfd;                      /* epoll.c's state: the epoll instance (-1 under --io uring) */
    struct mg_uring *uring;        /* uring.c's state: the ring, NULL under epoll */
    int pipe_r, pipe_w;            /* dispatch pipe: the acceptor writes fds to pipe_w */
    int policy;                    /* RDY_FIFO or RDY_LIFO */
    size_t stack_size;
    /* ready queue: a singly-linked list; FIFO appends at the tail, LIFO pushes at the head */
    mg_coroutine *ready_head, *ready_tail;
    uint64_t ready_len;
    /* the scheduler's own context: where yields return to */
    ucontext_t sched_ctx;
    ucontext_t ctx_template; /* one getcontext() per worker, copied by coroutine_create */
    int ctx_template_ok;
    void *sched_sp;  /* the scheduler's stack pointer (--switch fast) */
    int fast_switch; /* 1: mg_fast_switch, 0: swapcontext */
    mg_coroutine *current;
    void *asan_fake_stack; /* ASan: the scheduler's side of each switch */
    const void *asan_sched_bottom;
    size_t asan_sched_size;
    void *altstack; /* signal stack for the guard-page handler */
    stack_t old_altstack;
    int max_conns;                     /* the process's --max-connections, over all its workers (0: none) */
    int no_stack_pool, no_buffer_pool; /* benchmarks only: MINGINX_NO_*_POOL */
    int fd_batch_len;                  /* fds read per pipe read (MG_FD_BATCH; MINGINX_FD_BATCH);
                                    set at creation, read by the acceptor too */
    int listen_fd;                     /* --accept reuseport: this worker's own listener, else -1 */
    int64_t accept_resume_ms;          /* out of fds: listen again at this time (0: listening) */
    int trace;                         /* cfg.trace: record the happy path in ring */
    mg_trace_ring ring;
    /* coroutines waiting for their Python handler (pycall.c), linked by next_ready */
    mg_coroutine *py_head, *py_tail;
    mg_pycall *py_orphans; /* late orphans whose stream iterator must be closed (ABORT) */
    uint64_t py_inflight;  /* deferred rounds not yet posted back */
    /* deferred rounds posted back by other threads (mg_call_post): a locked
     * list, and an eventfd in epoll written when the list turns non-empty */
    pthread_mutex_t post_lock;
    mg_pycall *post_head, *post_tail;
    int post_fd;
    uint64_t next_request_id;
    /* fd -> waiting coroutine; sized from RLIMIT_NOFILE, not FD_SETSIZE */
    mg_coroutine **fd_table;
    int fd_table_size;
    /* fd -> parked connection (same size), and the parked list by deadline */
    mg_parked **park_table;
    mg_parked *park_head, *park_tail;
    /* coroutines waiting between requests, not parked yet: oldest first (lazy parking) */
    mg_coroutine *idle_head, *idle_tail;
    int64_t pool_trim_ms; /* when the pools are next trimmed (MG_POOL_TRIM_MS) */
    /* all live coroutines, for shutdown */
    mg_coroutine *all;
    /* pools: stacks (whole regions) and request buffers */
    void **stack_pool;
    int stack_pool_len;
    mg_reqbuf *reqbuf_pool;
    int reqbuf_pool_len;
    mg_xstate *xstate_pool; /* (the same for the requests' own state) */
    int xstate_pool_len;
    struct mg_file_cache *cache; /* open-file cache (cache.c), NULL when off */
    /* the last request path the static files resolved to a cache entry
     * (static.c target_memo_*): its raw bytes and the entry, NULL once that
     * entry leaves the cache (cache.c entry_remove) */
    struct mg_centry *memo_entry;
    uint32_t memo_len;
    char memo_path[MG_MEMO_PATH_MAX];
    mg_host_memo host_memo; /* the last Host that passed its check (parse_http) */
    /* timers */
    mg_timer_list timers[MG_TIMER_MAX];
    int64_t now_ms;        /* CLOCK_MONOTONIC, refreshed after each epoll_wait */
    time_t wall_sec;       /* time(NULL), read with now_ms after each wait: no call per response */
    mg_date_cache date;    /* the Date field heads carry (h1.c) */
    mg_alog *alog;         /* the server's access log, NULL when off */
    mg_alog_buf *alog_buf; /* lines not yet handed to the writer */
    time_t alog_sec;       /* second alog_time is for */
    char alog_time[32];    /* "28/Nov/2026:03:01:59 +0000" ($time_local) */
    int alog_time_len;
    int stopping; /* graceful stop asked */
    int exiting;  /* leave the loop now */
    uint64_t next_id;
    mg_stats stats;
    mg_stats *shared; /* --processes: this worker's entry in the shared region
                                    (stats_publish), else NULL */
    int fd_batch[MG_FD_BATCH];
    struct epoll_event events[MG_MAX_EVENTS];
    /* the acceptor thread's, not the worker's: fds accepted for this worker
     * and not yet written down its pipe (acceptor.c: dispatch) */
    int dispatch_q[MG_DISPATCH_BATCH];
    int dispatch_len;
};

struct mg_server {
    mg_config cfg;
    char *root;      /* our copy of cfg.root */
    char *root_real; /* realpath() of the root, for symlink checks */
    int root_fd;     /* O_PATH fd of the root directory */
    struct mg_worker *workers[MG_MAX_WORKERS];
    int nworkers;
    unsigned next_worker; /* round-robin cursor of dispatch() */
    int accept_epfd;
    int accept_paused; /* EMFILE back-off in progress */
    int trace;
    int index;          /* -1: the acceptor's trace records say so */
    mg_trace_ring ring; /* the acceptor's trace */
    int64_t started_ms;
    /* --processes: the region of every process's counters (mg_server_share_stats) */
    mg_stats *shared_stats;
    int shared_nslots, shared_nworkers, shared_slot;
    mg_alog *alog; /* the access log's writer, NULL when off */
    /* front.c: copies of cfg's --header lines, --error-page bodies, trusted peers */
    char *add_headers; /* NULL: none */
    size_t add_headers_len;
    struct mg_field *added; /* the same as fields (views into add_headers) */
    int nadded;
    struct mg_err_page *error_page[200]; /* by status - 400; NULL: the built-in page */
    mg_cidr *trusted;
    int trusted_n;
};

/* coroutine.c */
MG_HIDDEN mg_coroutine *coroutine_create(struct mg_worker *w, mg_entry_fn entry, void *arg, int fd);
/* The same with a given id (0: a new one): a parked connection's next coroutine keeps its id. */
MG_HIDDEN mg_coroutine *coroutine_create_as(struct mg_worker *w, mg_entry_fn entry, void *arg, int fd,
                                            uint64_t id);
MG_HIDDEN void coroutine_destroy(mg_coroutine *co);
MG_HIDDEN void coroutine_yield(mg_coroutine *co, int reason);
/* io_park's yield: the same, but a read's wait is traced as the step the seed
 * names, "recv_async -> EAGAIN, yield (read)" (MG_EV_RECV_ASYNC, arg -EAGAIN). */
MG_HIDDEN void coroutine_yield_io(mg_coroutine *co, int reason);
MG_HIDDEN void coroutine_resume(struct mg_worker *w, mg_coroutine *co);
MG_HIDDEN void coroutine_pool_drain(struct mg_worker *w);
/* Unmap pooled stacks beyond keep. */
MG_HIDDEN void coroutine_pool_trim(struct mg_worker *w, int keep);
/* A thread that runs coroutines: signal stack and guard-page handler on/off. */
MG_HIDDEN void coroutine_thread_enter(struct mg_worker *w);
MG_HIDDEN void coroutine_thread_leave(struct mg_worker *w);

/* worker.c */
MG_HIDDEN void add_to_ready(struct mg_worker *w, mg_coroutine *co);
MG_HIDDEN void add_to_ready_tail(struct mg_worker *w, mg_coroutine *co);
MG_HIDDEN void schedule(struct mg_worker *w);
MG_HIDDEN void wake_fd(struct mg_worker *w, int fd, uint32_t events);
/* An idle keep-alive connection (its request buffer already given back) keeps
 * only its fd and an mg_parked: its coroutine may end.  0: parked (co->conn->fd is
 * -1 now, so the coroutine's end leaves the socket open), -1: keep waiting. */
MG_HIDDEN int worker_park(mg_coroutine *co);
/* Lazy parking: onto / off the worker's idle list (waiting between requests,
 * parked by the timer sweep after MG_PARK_DELAY_MS).  Unlink is a no-op when off. */
MG_HIDDEN void worker_idle_link(mg_coroutine *co);
MG_HIDDEN void worker_idle_unlink(mg_coroutine *co);
MG_HIDDEN void timer_set(mg_coroutine *co, int cls);
MG_HIDDEN void timer_clear(mg_coroutine *co);
MG_HIDDEN int64_t mg_now_ms(void);
/* A worker with its epoll set and dispatch pipe, no thread (testhooks.c uses it
 * too); NULL and *err = -errno on failure. */
MG_HIDDEN struct mg_worker *worker_alloc(struct mg_server *srv, int policy, int stack_size, int *err);

/* ------------------------------------------------------------- backends */
/* How a worker waits, chosen once per worker (worker_alloc sets w->be): the
 * worker loop, io.c and pycall.c call these and never ask which it is.
 * Contracts: 0 or -errno unless said. */
struct iovec;
typedef struct mg_backend {
    const char *name;                 /* "epoll", "uring" */
    const char *wait_call;            /* the system call wait makes, for its error line */
    int (*init)(struct mg_worker *w); /* the pipe and post fds watched; free undoes a partial init */
    void (*free)(struct mg_worker *w);
    /* wait for events or the timeout (ms, -1: none): their count, as epoll_events
     * in w->events; -1 and errno on failure */
    int (*wait)(struct mg_worker *w, int timeout_ms);
    int (*add)(struct mg_worker *w, int fd); /* a new connection */
    int (*listen)(struct mg_worker *w, int fd);
    void (*unlisten)(struct mg_worker *w, int fd);
    /* io_park: wait until co->conn->fd is ready for reason (MG_YIELD_READ/WRITE).
     * 0: try the call again; -ETIMEDOUT: the coroutine's timer fired */
    int (*poll)(mg_coroutine *co, int reason);
    /* a parked connection (worker_park): watched without a coroutine; unpark
     * before its fd is closed */
    int (*park)(struct mg_worker *w, int fd, uint64_t id);
    void (*unpark)(struct mg_worker *w, int fd, uint64_t id);
    /* a coroutine waiting for a deferred Python round: hear its client leave */
    void (*watch_hangup)(mg_coroutine *co);
    void (*unwatch_hangup)(mg_coroutine *co);
    /* A completion backend's own I/O on the socket, used for a raw transport
     * only (mg_transport.raw), as recv_async / sendv_async; NULL: io.c makes
     * the transport's call and polls on EAGAIN (epoll). */
    ssize_t (*recv)(mg_coroutine *co, void *buf, size_t len);
    ssize_t (*sendv)(mg_coroutine *co, struct iovec *iov, int iovcnt);
    /* the loop is over: afterwards nothing in flight names a stack or a buffer */
    void (*drain)(struct mg_worker *w);
} mg_backend;
MG_HIDDEN extern const mg_backend mg_backend_epoll; /* epoll.c */
MG_HIDDEN extern const mg_backend mg_backend_uring; /* uring.c */

/* ----------------------------------------------------------- transports */
/* A connection's bytes (co->conn->tp), as nginx's ngx_connection_t recv/send
 * pointers: a TLS transport swaps in its own table and nothing above io.c
 * learns of it.  Each call tries once and never waits; -EAGAIN means "not
 * now": io.c parks on the backend (io_park) in the call's direction and
 * tries again.  EINTR is retried inside.  Counts are the connection's own
 * bytes (under TLS: plaintext), which io.c adds to co->conn->sent and bytes_out. */
typedef struct mg_transport {
    const char *name;
    /* bytes read (> 0), 0 at EOF, -EAGAIN, -errno.  Sets co->conn->drained when it
     * holds nothing more and the socket is known empty (a read shorter than
     * its room, or EAGAIN): until new input is reported no read is made */
    ssize_t (*recv)(mg_coroutine *co, void *buf, size_t len);
    /* bytes taken (> 0), -EAGAIN, -errno; a gone peer is -EPIPE, never SIGPIPE */
    ssize_t (*sendv)(mg_coroutine *co, const struct iovec *iov, int iovcnt);
    /* count bytes of file_fd from *offset (advanced): bytes (> 0), 0 (the
     * file ended), -EAGAIN, -errno.  NULL: io.c preads and sends (TLS) */
    ssize_t (*sendfile)(mg_coroutine *co, int file_fd, off_t *offset, size_t count);
    void (*cork)(mg_coroutine *co, int on); /* hold partial frames back (NULL: no such thing) */
    int (*shutdown)(mg_coroutine *co);      /* no more output: FIN (TLS: close_notify first) */
    /* bytes it holds that the socket no longer shows (TLS: SSL_pending), NULL: never any.
     * A connection holding some is not parked: no edge would come for them */
    size_t (*pending)(mg_coroutine *co);
    /* A connection turned away before it has a coroutine (the 503 of
     * --max-connections): one try, MSG_DONTWAIT; bytes or -errno */
    ssize_t (*send_early)(int fd, const void *buf, size_t len);
    void (*free)(void *ctx); /* co->conn->tp_ctx at the connection's end; NULL: nothing to free */
    int raw;                 /* 1: its bytes are the socket's: a completion backend may move them */
} mg_transport;
MG_HIDDEN extern const mg_transport mg_transport_plain; /* transport.c */
/* testhooks.c: MINGINX_TEST_NO_SENDFILE=1 gives new connections a plain
 * transport without sendfile (a TLS transport's shape: io.c preads) */
MG_HIDDEN extern const mg_transport mg_transport_plain_nosendfile;
MG_HIDDEN int mg_test_no_sendfile(void);
/* The connection's transport state goes (its end, or a park's close). */
static inline void transport_free(const mg_transport *tp, void *ctx)
{
    if (ctx && tp->free)
        tp->free(ctx);
}

/* uring.c: the io_uring backend's own (mg_backend_uring holds the rest). */
struct mg_uring;
MG_HIDDEN unsigned uring_setup_flags(struct mg_worker *w);
/* testhooks.c: MINGINX_TEST_NO_URING=1 (io_uring_setup fails with ENOSYS),
 * MINGINX_TEST_URING_PLAIN=1 (no SINGLE_ISSUER|DEFER_TASKRUN: the fallback ring),
 * MINGINX_TEST_URING_NO_CANCEL_ALL=1 (ASYNC_CANCEL_ANY|ALL refused, as before 5.19) */
MG_HIDDEN int mg_test_no_uring(void);
MG_HIDDEN int mg_test_uring_plain(void);
MG_HIDDEN int mg_test_uring_no_cancel_all(void);

/* acceptor.c */
MG_HIDDEN void dispatch(struct mg_server *srv, int fd);
MG_HIDDEN void dispatch_flush(struct mg_server *srv);

/* io.c: each returns bytes moved (>= 0, 0 = EOF for recv) or -errno;
 * -ETIMEDOUT when the coroutine's timer fired. */
MG_HIDDEN ssize_t recv_async(mg_coroutine *co, void *buf, size_t len);
/* recv_async's first half: one read, -EAGAIN instead of waiting. */
MG_HIDDEN ssize_t recv_nowait(mg_coroutine *co, void *buf, size_t len);
MG_HIDDEN ssize_t send_async(mg_coroutine *co, const void *buf, size_t len);
struct iovec;
MG_HIDDEN ssize_t sendv_async(mg_coroutine *co, struct iovec *iov, int iovcnt);
MG_HIDDEN ssize_t sendfile_async(mg_coroutine *co, int file_fd, off_t offset, size_t count);
MG_HIDDEN void set_cork(mg_coroutine *co, int on);
/* No more output on the connection (the lingering close): 0 or -errno. */
MG_HIDDEN int shutdown_async(mg_coroutine *co);
/* Park on the fd until it is ready for `reason` (after a call said EAGAIN).
 * Returns 0 to try again, or -ETIMEDOUT. */
MG_HIDDEN int io_park(mg_coroutine *co, int reason);

/* conn.c */
MG_HIDDEN void conn_entry(mg_coroutine *co);
MG_HIDDEN mg_reqbuf *reqbuf_get(struct mg_worker *w);
MG_HIDDEN void reqbuf_put(struct mg_worker *w, mg_reqbuf *rb);
MG_HIDDEN void reqbuf_pool_drain(struct mg_worker *w);
/* Free pooled request buffers beyond keep. */
MG_HIDDEN void reqbuf_pool_trim(struct mg_worker *w, int keep);
/* The same for the requests' own state (http.h: mg_xstate). */
MG_HIDDEN mg_xstate *xstate_get(struct mg_worker *w);
MG_HIDDEN void xstate_put(struct mg_worker *w, mg_xstate *xs);
MG_HIDDEN void xstate_pool_trim(struct mg_worker *w, int keep);

/* stats.c: /_minginx/stats and /_minginx/trace (an mg_mw_result: MG_MW_PASS if the path is not one of them) */
struct mg_request_s;
struct mg_exchange;
MG_HIDDEN int stats_serve(struct mg_exchange *x, struct mg_request_s *req);
/* Copy the worker's counters into its shared entry (w->shared), word by word. */
MG_HIDDEN void stats_publish(struct mg_worker *w);

/* pycall.c */
struct mg_request_s;
MG_HIDDEN void run_python(struct mg_worker *w);
/* The worker's side of mg_call_post: take the posted rounds, resume their
 * coroutines (or free their orphans). */
MG_HIDDEN void drain_posts(struct mg_worker *w);
/* A coroutine about to be destroyed with a deferred round in flight gives
 * its request buffer (and body) up to the handler thread still using it. */
MG_HIDDEN void pycall_orphan(mg_coroutine *co);
/* Free a posted orphan (worker thread, or mg_worker_free once no thread posts). */
MG_HIDDEN void pycall_free_orphan(struct mg_worker *w, mg_pycall *c);
/* Hand the request to Python: an mg_mw_result (MG_MW_PASS: Python passed it
 * on, the static files answer; MG_MW_DONE with x->keep_alive cleared when
 * the connection must close). */
MG_HIDDEN int python_request(struct mg_exchange *x, struct mg_request_s *req, const char *body,
                             size_t body_len);

/* log.c: one record of the error log (minginx_cffi/log.py's layout), one write(2).
 * mg_log is mg_log_at(MG_LOG_ERROR, ...): what the engine reports is a problem. */
/* conn.c: the connection's addresses, looked up once per connection */
MG_HIDDEN void conn_addresses(mg_coroutine *co);
/* The client address the access log prints: the one place to point at an
 * effective client (proxy headers) later. */
MG_HIDDEN const char *conn_client_addr(mg_coroutine *co);

/* accesslog.c.  A worker appends lines to its own buffer with no lock and
 * hands full (or MG_ALOG_FLUSH_MS old) buffers to one writer thread. */
MG_HIDDEN int alog_new(mg_server *srv);   /* 0 or -errno; srv->alog stays NULL when off */
MG_HIDDEN void alog_free(mg_server *srv); /* writes every queued line, joins the writer */
/* A line for the response just sent on co (req NULL: the head was not parsed). */
MG_HIDDEN void alog_request(mg_coroutine *co, struct mg_request_s *req, int status);
/* A line for a connection turned away without a coroutine (503 busy). */
MG_HIDDEN void alog_rejected(struct mg_worker *w, int fd, int status, uint64_t body_bytes);
/* The worker loop's end of iteration: hand over a buffer older than
 * MG_ALOG_FLUSH_MS (force: any lines at all).  Returns ms until the
 * pending lines are due (-1: none pending), for epoll_wait's timeout. */
MG_HIDDEN int alog_tick(struct mg_worker *w, int force);
MG_HIDDEN int64_t alog_now_us(void);
/* front.c: what the server does in front of an app */
MG_HIDDEN int front_init(struct mg_server *srv); /* 0 or -errno; front_free undoes it */
MG_HIDDEN void front_free(struct mg_server *srv);
struct mg_request_s;
/* Fill co->conn->client* for the request just parsed (the effective client). */
MG_HIDDEN void request_client(mg_coroutine *co, const struct mg_request_s *req);
/* The request's client: address text, *port, *https (looked up on first use). */
MG_HIDDEN const char *conn_client(mg_coroutine *co, int *port, int *https);
struct mg_err_page {
    char *body;
    size_t body_len;
    const char *ctype; /* its Content-Type (cache.c mime_type: a static string) */
};

/* helpers */
MG_HIDDEN void mg_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
MG_HIDDEN void mg_log_at(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same from a signal handler: msg as it is, no printf, no localtime. */
MG_HIDDEN void mg_log_signal_safe(int level, const char *msg, size_t len);

#endif /* MINGINX_INTERNAL_H */
