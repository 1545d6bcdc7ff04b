/* trace.c - per-thread ring buffers of happy-path events, drained by Python (--trace).
 *
 * One writer per ring (its worker, or the acceptor), one reader (Python's
 * drain thread).  The writer never waits: it overwrites the oldest record
 * and publishes the new head with a release store.  The reader copies from
 * its tail to the head it saw, then looks at the head again: whatever the
 * writer lapped meanwhile is counted as dropped, not printed half-written.
 */
#include "internal.h"
#include "http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert((MG_TRACE_RING & (MG_TRACE_RING - 1)) == 0, "the ring size is a power of two");

int trace_ring_init(mg_trace_ring *r)
{
    r->recs = calloc(MG_TRACE_RING, sizeof(*r->recs));
    r->head = r->tail = 0;
    return r->recs ? 0 : -ENOMEM;
}

void trace_ring_free(mg_trace_ring *r)
{
    free(r->recs);
    r->recs = NULL;
}

void trace_push(mg_trace_ring *r, int worker, int event, uint64_t co, int fd, int arg)
{
    trace_push_text(r, worker, event, co, fd, arg, "");
}

void trace_push_text(mg_trace_ring *r, int worker, int event, uint64_t co, int fd, int arg, const char *text)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t h = r->head;
    mg_trace_rec *rec = &r->recs[h & (MG_TRACE_RING - 1)];
    /* Head h (published by the last push) must be visible before any of the
     * stores below reach the slot of record h - MG_TRACE_RING: that is what
     * tells the reader the slot is being rewritten (mg_trace_drain). */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    rec->t_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    rec->co = co;
    rec->fd = fd;
    rec->arg = arg;
    rec->worker = (int16_t)worker;
    rec->event = (uint16_t)event;
    size_t n = strnlen(text, sizeof(rec->text) - 1);
    memcpy(rec->text, text, n);
    rec->text[n] = '\0';
    __atomic_store_n(&r->head, h + 1, __ATOMIC_RELEASE);
}

/* The acceptor's accept and dispatch of fd to worker, the latest no later than
 * before_us, read from another thread's ring (GET /_minginx/trace, stats.c): a
 * record is kept only if the writer had not lapped its slot when it was copied
 * (as mg_trace_drain).  The last 1024 records are searched.  Returns how many
 * were found, 0 or 2, into out oldest first. */
int trace_find_dispatch(mg_trace_ring *r, int fd, int worker, uint64_t before_us, mg_trace_rec out[2])
{
    if (!r->recs)
        return 0;
    uint64_t h = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    uint64_t lo = h > 1024 ? h - 1024 : 0;
    int n = 0;
    for (uint64_t i = h; i > lo && n < 2; i--) {
        mg_trace_rec rec = r->recs[(i - 1) & (MG_TRACE_RING - 1)];
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        uint64_t h2 = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
        if (h2 >= MG_TRACE_RING && i - 1 < h2 - MG_TRACE_RING + 1)
            break; /* lapped: this record and all older ones are gone */
        if (rec.fd != fd || rec.t_us > before_us)
            continue;
        if (n == 0 && rec.event == MG_EV_DISPATCH && rec.arg == worker)
            out[1] = rec, n = 1;
        else if (n == 0 && rec.event == MG_EV_ACCEPT)
            break; /* accepted and not dispatched to us: not our connection */
        else if (n == 1 && rec.event == MG_EV_ACCEPT)
            out[0] = rec, n = 2;
    }
    return n == 2 ? 2 : 0;
}

/* Append s[0..len) to out (room for cap bytes and a NUL, *at bytes used),
 * each byte outside printable ASCII (a control, a space, UTF-8) as '?': a
 * path from the network is printed to a terminal and put in JSON. */
static void text_append(char *out, size_t cap, size_t *at, const char *s, size_t len)
{
    for (size_t i = 0; i < len && *at < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[(*at)++] = c > 0x20 && c < 0x7f && c != '"' && c != '\\' ? (char)c : '?';
    }
}

void trace_parse(mg_coroutine *co, const mg_request *req, int status)
{
    char *t = co->trace_req;
    size_t at = 0, cap = sizeof(co->trace_req) - 1;
    if (status == MG_PARSE_OK) {
        text_append(t, cap, &at, req->method.p, req->method.len);
        if (at < cap)
            t[at++] = ' ';
        const mg_str *p = req->path.len ? &req->path : &req->target; /* CONNECT's authority */
        text_append(t, cap, &at, p->p, p->len);
    }
    t[at] = '\0';
    mg_worker *w = co->worker;
    trace_push_text(&w->ring, w->index, MG_EV_PARSE_HTTP, co->id, co->conn->fd, status, t);
}

int mg_trace_drain(mg_server *srv, int ring, mg_trace_rec *out, int max, uint64_t *dropped)
{
    mg_trace_ring *r;
    if (ring < 0)
        r = &srv->ring;
    else if (ring < srv->nworkers)
        r = &srv->workers[ring]->ring;
    else
        return -EINVAL;
    if (!r->recs)
        return 0;
    uint64_t h = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    if (h - r->tail > MG_TRACE_RING) {
        *dropped += h - r->tail - MG_TRACE_RING;
        r->tail = h - MG_TRACE_RING;
    }
    uint64_t n = h - r->tail;
    if (n > (uint64_t)max)
        n = (uint64_t)max;
    for (uint64_t i = 0; i < n; i++)
        out[i] = r->recs[(r->tail + i) & (MG_TRACE_RING - 1)];
    /* The copies above must be done before head is read again. */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    /* Records the writer lapped while we copied are not to be trusted.  With
     * head h2 published, records h2 - RING + 1 .. h2 - 1 are whole, but record
     * h2 itself may be half-written right now, and its slot is the one record
     * h2 - RING had: so the first record to trust is h2 - RING + 1, not
     * h2 - RING (that off-by-one let a half-written slot through).  Tested by
     * tests/test_trace_stats.py::test_a_slot_being_rewritten_is_never_drained. */
    uint64_t h2 = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    uint64_t first_valid = h2 >= MG_TRACE_RING ? h2 - MG_TRACE_RING + 1 : 0;
    uint64_t skip = first_valid > r->tail ? first_valid - r->tail : 0;
    if (skip > n)
        skip = n;
    if (skip) {
        memmove(out, out + skip, (size_t)(n - skip) * sizeof(*out));
        *dropped += skip;
    }
    r->tail += n;
    return (int)(n - skip);
}
