/* stats.c - GET /_minginx/stats and /_minginx/trace: the workers' counters and this request's trace, as JSON.
 *
 * Answered in C, on the coroutine, with --stats; the demo site's stats page
 * polls them.  Other workers' counters are read while they change: each
 * number is whole, the set is a snapshot in motion.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "http.h"
#include "response.h"
#include "exchange.h"

static const char *const EVENT_NAMES[] = {
    /* no size: a new last event without a name fails below */
    [MG_EV_ACCEPT] = "accept",
    [MG_EV_DISPATCH] = "dispatch",
    [MG_EV_FD_BATCH] = "fd_batch",
    [MG_EV_COROUTINE_CREATE] = "coroutine_create",
    [MG_EV_ADD_TO_READY] = "add_to_ready",
    [MG_EV_SCHEDULE] = "schedule",
    [MG_EV_TRAMPOLINE_START] = "trampoline_start",
    [MG_EV_ENTRY] = "entry",
    [MG_EV_YIELD] = "yield",
    [MG_EV_WAKE_FD] = "wake_fd",
    [MG_EV_HANDLER_DONE] = "handler_done",
    [MG_EV_FINISHED] = "finished",
    [MG_EV_COROUTINE_DESTROY] = "coroutine_destroy",
    [MG_EV_WAKE_PYTHON] = "wake_python",
    [MG_EV_PARK] = "park",
    [MG_EV_UNPARK] = "unpark",
    [MG_EV_SUBMIT] = "submit",
    [MG_EV_COMPLETE] = "complete",
    [MG_EV_RECV_ASYNC] = "recv_async",
    [MG_EV_SEND_ASYNC] = "send_async",
    [MG_EV_SENDFILE_ASYNC] = "sendfile_async",
    [MG_EV_PARSE_HTTP] = "parse_http",
    [MG_EV_STATIC_SERVE] = "static_serve",
    [MG_EV_RUN_PYTHON] = "run_python",
};
_Static_assert(sizeof(EVENT_NAMES) / sizeof(EVENT_NAMES[0]) == MG_EV_MAX, "a name for every mg_event");

static const char *const YIELD_NAMES[] = {"ready", "read", "write", "python"};
/* IORING_OP_* a coroutine submits (minginx_cffi/trace.py URING_OPS) */
static const char *uring_op_name(int op)
{
    switch (op) {
    case 6: return "POLL_ADD";
    case 9: return "SENDMSG";
    case 26: return "SEND";
    case 27: return "RECV";
    default: return NULL;
    }
}

/* The errors the trace's calls return, by name (minginx_cffi/trace.py ERRNO_NAMES). */
static const char *errno_name(int e)
{
    switch (e) {
    case EAGAIN: return "EAGAIN";
    case EINTR: return "EINTR";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECANCELED: return "ECANCELED";
    case ENOMEM: return "ENOMEM";
    case ENOBUFS: return "ENOBUFS";
    case ENOTCONN: return "ENOTCONN";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EIO: return "EIO";
    default: return NULL;
    }
}

/* An epoll event mask as names, "EPOLLIN|EPOLLRDHUP" (minginx_cffi/trace.py epoll_names). */
static void epoll_names(mg_buf *b, unsigned mask)
{
    static const struct {
        unsigned bit;
        const char *name;
    } bits[] = {{EPOLLIN, "EPOLLIN"},   {EPOLLPRI, "EPOLLPRI"}, {EPOLLOUT, "EPOLLOUT"},
                {EPOLLERR, "EPOLLERR"}, {EPOLLHUP, "EPOLLHUP"}, {EPOLLRDHUP, "EPOLLRDHUP"}};
    int n = 0;
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
        if (mask & bits[i].bit) {
            buf_printf(b, "%s%s", n++ ? "|" : "", bits[i].name);
            mask &= ~bits[i].bit;
        }
    if (mask || !n)
        buf_printf(b, "%s0x%x", n ? "|" : "", mask);
}

/* The named fields of one record after its numbers: what arg (and text) mean
 * for its event.  minginx_cffi/trace.py json_fields is the same for the port
 * (tests/test_trace_stats.py: test_trace_endpoint_names_its_codes). */
static void event_fields(mg_buf *b, const mg_trace_rec *r)
{
    int a = r->arg;
    switch (r->event) {
    case MG_EV_DISPATCH: buf_printf(b, ",\"worker\":%d", a); break;
    case MG_EV_YIELD:
        if (a >= 0 && a < 4)
            buf_printf(b, ",\"reason\":\"%s\"", YIELD_NAMES[a]);
        break;
    case MG_EV_WAKE_FD:
    case MG_EV_UNPARK:
        buf_printf(b, ",\"events\":\"");
        epoll_names(b, (unsigned)a);
        buf_printf(b, "\"");
        break;
    case MG_EV_RECV_ASYNC:
    case MG_EV_SEND_ASYNC:
    case MG_EV_SENDFILE_ASYNC:
        if (a >= 0) {
            buf_printf(b, ",\"bytes\":%d", a);
        } else {
            const char *e = errno_name(-a);
            if (e)
                buf_printf(b, ",\"error\":\"%s\"", e);
            else
                buf_printf(b, ",\"error\":\"errno %d\"", -a);
            if (a == -EAGAIN && r->event == MG_EV_RECV_ASYNC)
                buf_printf(b, ",\"reason\":\"read\"");
        }
        break;
    case MG_EV_PARSE_HTTP:
    case MG_EV_HANDLER_DONE: {
        /* text: "METHOD /path", printable ASCII without '"' or '\\' (trace_parse) */
        const char *sp = memchr(r->text, ' ', strnlen(r->text, sizeof(r->text)));
        if (sp)
            buf_printf(b, ",\"method\":\"%.*s\",\"path\":\"%s\"", (int)(sp - r->text), r->text, sp + 1);
        if (r->event == MG_EV_HANDLER_DONE || a)
            buf_printf(b, ",\"status\":%d", a);
        break;
    }
    case MG_EV_PARK: buf_printf(b, ",\"requests\":%d", a); break;
    case MG_EV_RUN_PYTHON: buf_printf(b, ",\"calls\":%d", a); break;
    case MG_EV_SUBMIT: {
        const char *op = uring_op_name(a);
        if (op)
            buf_printf(b, ",\"op\":\"%s\"", op);
        else
            buf_printf(b, ",\"op\":\"op %d\"", a);
        break;
    }
    case MG_EV_COMPLETE: buf_printf(b, ",\"res\":%d", a); break;
    default: break;
    }
}

/* Every field of mg_stats is a 64-bit counter: the region is summed and copied word by word. */
#define STATS_WORDS (sizeof(mg_stats) / sizeof(uint64_t))
_Static_assert(sizeof(mg_stats) % sizeof(uint64_t) == 0, "mg_stats is made of 64-bit words");

static void stats_add(mg_stats *acc, const mg_stats *x)
{
    uint64_t *a = (uint64_t *)acc;
    const uint64_t *v = (const uint64_t *)x;
    for (size_t i = 0; i < STATS_WORDS; i++)              /* coroutines_alive too: two's complement */
        a[i] += __atomic_load_n(&v[i], __ATOMIC_RELAXED); /* another process writes them */
}

void stats_publish(mg_worker *w)
{
    uint64_t *dst = (uint64_t *)w->shared;
    const uint64_t *src = (const uint64_t *)&w->stats;
    for (size_t i = 0; i < STATS_WORDS; i++) /* untorn words for the readers */
        __atomic_store_n(&dst[i], src[i], __ATOMIC_RELAXED);
}

int mg_server_share_stats(mg_server *srv, mg_stats *region, int nslots, int nworkers, int slot)
{
    if (!region || nslots < 1 || nworkers < 1 || slot < 0 || slot >= nslots)
        return -EINVAL;
    srv->shared_stats = region;
    srv->shared_nslots = nslots;
    srv->shared_nworkers = nworkers;
    srv->shared_slot = slot;
    return 0;
}

/* The fields of one mg_stats, without braces: a worker, a process or the total. */
static void stats_fields(mg_buf *b, const mg_stats *st)
{
    buf_printf(b,
               "\"connections\":%llu,\"requests\":%llu,\"bytes_out\":%llu,"
               "\"switches\":%llu,\"yields\":{\"ready\":%llu,\"read\":%llu,\"write\":%llu,"
               "\"python\":%llu},\"wakeups\":%llu,\"timeouts\":%llu,\"ready_max\":%llu,"
               "\"coroutines_alive\":%lld,\"coroutines_total\":%llu,\"stack_pool\":%llu,"
               "\"stacks_mapped\":%llu,\"cache_hits\":%llu,\"cache_misses\":%llu,"
               "\"cache_entries\":%llu,\"py_batches\":%llu,\"py_calls\":%llu,\"rejected\":%llu,"
               "\"handler_timeouts\":%llu,\"log_lines\":%llu,\"log_dropped\":%llu,\"parked\":%llu",
               (unsigned long long)st->connections, (unsigned long long)st->requests,
               (unsigned long long)st->bytes_out, (unsigned long long)st->switches,
               (unsigned long long)st->yields[0], (unsigned long long)st->yields[1],
               (unsigned long long)st->yields[2], (unsigned long long)st->yields[3],
               (unsigned long long)st->wakeups, (unsigned long long)st->timeouts,
               (unsigned long long)st->ready_max, (long long)st->coroutines_alive,
               (unsigned long long)st->coroutines_total, (unsigned long long)st->stack_pool,
               (unsigned long long)st->stacks_mapped, (unsigned long long)st->cache_hits,
               (unsigned long long)st->cache_misses, (unsigned long long)st->cache_entries,
               (unsigned long long)st->py_batches, (unsigned long long)st->py_calls,
               (unsigned long long)st->rejected, (unsigned long long)st->handler_timeouts,
               (unsigned long long)st->log_lines, (unsigned long long)st->log_dropped,
               (unsigned long long)st->parked);
}

/* {"workers": this process's, live; "total": theirs summed; shared (--processes):
 * "process": our slot, "processes": every slot summed over its workers (ours live,
 * the others as last published), "retired": exited processes, and "total": all. */
static void stats_json(mg_buf *b, mg_server *srv)
{
    buf_printf(b, "{\"engine\":\"cffi\",\"io\":\"%s\",\"uptime_ms\":%lld,\"policy\":\"%s\",\"workers\":[",
               srv->cfg.io == MG_IO_URING ? "uring" : "epoll", (long long)(mg_now_ms() - srv->started_ms),
               srv->cfg.policy == RDY_LIFO ? "lifo" : "fifo");
    mg_stats mine, total;
    memset(&mine, 0, sizeof(mine));
    for (int i = 0; i < srv->nworkers; i++) {
        mg_stats st;
        mg_worker_stats(srv->workers[i], &st);
        stats_add(&mine, &st);
        buf_printf(b, "%s{\"worker\":%d,", i ? "," : "", i);
        stats_fields(b, &st);
        buf_printf(b, "}");
    }
    buf_printf(b, "]");
    total = mine;
    if (srv->shared_stats) {
        int nw = srv->shared_nworkers;
        memset(&total, 0, sizeof(total));
        buf_printf(b, ",\"process\":%d,\"processes\":[", srv->shared_slot);
        int listed = 0;
        for (int s = 0; s < srv->shared_nslots; s++) {
            mg_stats slot;
            if (s == srv->shared_slot) {
                slot = mine;
            } else {
                memset(&slot, 0, sizeof(slot));
                for (int i = 0; i < nw; i++)
                    stats_add(&slot, &srv->shared_stats[s * nw + i]);
            }
            stats_add(&total, &slot);
            static const mg_stats none;
            if (s != srv->shared_slot && memcmp(&slot, &none, sizeof(slot)) == 0)
                continue; /* a slot no process has counted in (the master's other bank) */
            buf_printf(b, "%s{\"process\":%d,", listed++ ? "," : "", s);
            stats_fields(b, &slot);
            buf_printf(b, "}");
        }
        mg_stats retired;
        memset(&retired, 0, sizeof(retired));
        for (int i = 0; i < nw; i++)
            stats_add(&retired, &srv->shared_stats[srv->shared_nslots * nw + i]);
        stats_add(&total, &retired);
        buf_printf(b, "],\"retired\":{");
        stats_fields(b, &retired);
        buf_printf(b, "}");
    }
    buf_printf(b, ",\"total\":{");
    stats_fields(b, &total);
    buf_printf(b, "}}\n");
}

#define TRACE_JSON_MAX  200
#define TRACE_JSON_HEAD 12

static void trace_event_json(mg_buf *b, const mg_trace_rec *r, int first)
{
    buf_printf(b, "%s{\"t_us\":%llu,\"event\":\"%s\",\"fd\":%d,\"arg\":%d", first ? "" : ",",
               (unsigned long long)r->t_us, EVENT_NAMES[r->event], r->fd, r->arg);
    event_fields(b, r);
    buf_printf(b, "}");
}

/* This connection's events, from its worker's ring (same thread: no race), and its
 * accept and dispatch from the acceptor's. */
static void trace_json(mg_buf *b, mg_coroutine *co)
{
    mg_worker *w = co->worker;
    uint64_t skipped = 0;
    buf_printf(b,
               "{\"engine\":\"cffi\",\"enabled\":%s,\"worker\":%d,\"coroutine\":%llu,\"fd\":%d,"
               "\"events\":[",
               w->trace ? "true" : "false", w->index, (unsigned long long)co->id, co->conn->fd);
    if (w->trace) {
        /* walk back to find our first record, then print forward */
        uint64_t h = w->ring.head, lo = h > MG_TRACE_RING ? h - MG_TRACE_RING : 0, first = h;
        for (uint64_t i = h; i > lo; i--) {
            mg_trace_rec *r = &w->ring.recs[(i - 1) & (MG_TRACE_RING - 1)];
            if (r->co == co->id)
                first = i - 1;
            /* a connection's first coroutine; one made at an unpark continues it */
            if (r->event == MG_EV_COROUTINE_CREATE && r->co == co->id &&
                !(i >= lo + 2 && w->ring.recs[(i - 2) & (MG_TRACE_RING - 1)].event == MG_EV_UNPARK))
                break;
        }
        /* the fd_batch step just before coroutine_create is ours too, and before it the
         * acceptor's accept and dispatch (--accept reuseport: the worker's own accept) */
        int pre = 0;
        mg_trace_rec acc[2];
        if (first > lo && first < h) {
            mg_trace_rec *prev = &w->ring.recs[(first - 1) & (MG_TRACE_RING - 1)];
            if ((prev->event == MG_EV_FD_BATCH || prev->event == MG_EV_ACCEPT) && prev->fd == co->conn->fd)
                first--, pre = 1;
            prev = &w->ring.recs[first & (MG_TRACE_RING - 1)];
            if (prev->event == MG_EV_FD_BATCH)
                pre += trace_find_dispatch(&w->srv->ring, co->conn->fd, w->index, prev->t_us, acc);
        }
        /* at most TRACE_JSON_MAX: the connection's first TRACE_JSON_HEAD (its accept
         * and first coroutine) and its latest; "skipped" says how many are between */
        uint64_t total = (uint64_t)(pre > 1 ? pre - 1 : 0), k = 0;
        for (uint64_t i = first; i < h; i++) {
            mg_trace_rec *r = &w->ring.recs[i & (MG_TRACE_RING - 1)];
            total += r->co == co->id || (i == first && pre);
        }
        uint64_t skip_from = total > TRACE_JSON_MAX ? TRACE_JSON_HEAD : total;
        uint64_t skip_to = total > TRACE_JSON_MAX ? total - (TRACE_JSON_MAX - TRACE_JSON_HEAD) : total;
        for (int i = 0; i < pre - 1; i++, k++)
            if (k < skip_from || k >= skip_to)
                trace_event_json(b, &acc[i], k == 0);
        for (uint64_t i = first; i < h; i++) {
            mg_trace_rec *r = &w->ring.recs[i & (MG_TRACE_RING - 1)];
            if (r->co != co->id && !(i == first && pre))
                continue;
            if (k < skip_from || k >= skip_to)
                trace_event_json(b, r, k == 0);
            k++;
        }
        skipped = skip_to - skip_from;
    }
    buf_printf(b, "],\"skipped\":%llu}\n", (unsigned long long)skipped);
}

int stats_serve(mg_exchange *x, mg_request *req)
{
    static const char prefix[] = "/_minginx/";
    /* nosniff: the trace holds request paths, bytes a client chose; never read as HTML */
    static const mg_field fields[] = {
        MG_FIELD_LIT("Content-Type", "application/json"),
        MG_FIELD_LIT("Cache-Control", "no-store"),
        MG_FIELD_LIT("X-Content-Type-Options", "nosniff"),
    };
    if (req->path.len < sizeof(prefix) - 1 || memcmp(req->path.p, prefix, sizeof(prefix) - 1) != 0)
        return MG_MW_PASS;
    const char *what = req->path.p + sizeof(prefix) - 1;
    size_t wlen = req->path.len - (sizeof(prefix) - 1);
    int is_stats = wlen == 5 && memcmp(what, "stats", 5) == 0;
    int is_trace = wlen == 5 && memcmp(what, "trace", 5) == 0;
    if (!is_stats && !is_trace)
        return MG_MW_PASS;
    if (req->method_id != MG_M_GET && req->method_id != MG_M_HEAD)
        return send_error(x, 405);

    mg_buf body;
    buf_growable(&body);
    if (is_stats)
        stats_json(&body, x->w->srv);
    else
        trace_json(&body, x->co);
    if (body.err) {
        buf_free(&body);
        return send_error(x, 503);
    }
    /* respond counts the request: after the JSON, whose numbers are those before it */
    mg_head h = {.status = 200, .fields = fields, .nfields = 3, .length = (int64_t)body.len};
    int r = exchange_respond(x, &h) < 0 ? MG_MW_BROKEN : exchange_body(x, body.p, body.len, 1);
    buf_free(&body);
    return r;
}
