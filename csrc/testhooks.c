/* testhooks.c - the coroutine runtime's test hooks (tests/test_coroutine.py), kept out of worker.c.
 *
 * Real coroutines on a real worker struct with no thread, no epoll traffic and
 * no listener: mg_test_run() drives schedule() on the caller's thread until the
 * ready queue is empty.  The prototypes are in minginx.h (the test section).
 */
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>


/* uring.c's simulated kernels (tests/test_uring.py): read per ring set-up, a few per server. */
static int env_on(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] && strcmp(v, "0") != 0;
}

int mg_test_no_uring(void)
{
    return env_on("MINGINX_TEST_NO_URING");
}

int mg_test_uring_plain(void)
{
    return env_on("MINGINX_TEST_URING_PLAIN");
}

int mg_test_uring_no_cancel_all(void)
{
    return env_on("MINGINX_TEST_URING_NO_CANCEL_ALL");
}

int mg_test_no_sendfile(void)
{
    return env_on("MINGINX_TEST_NO_SENDFILE");
}

mg_worker *mg_test_worker_new(int policy, int stack_size, int *err)
{
    if (policy < 0 || policy >= RDY_POLICY_MAX || stack_size < MG_MIN_STACK_SIZE) {
        *err = -EINVAL;
        return NULL;
    }
    return worker_alloc(NULL, policy, stack_size, err);
}

int mg_test_worker_switch(mg_worker *w, int mode)
{
    w->fast_switch = mode == MG_SWITCH_FAST && MG_FAST_SWITCH_AVAILABLE;
    return w->fast_switch ? MG_SWITCH_FAST : MG_SWITCH_UCONTEXT;
}

typedef struct {
    int id, yields;
    int *log, cap, *len;
} test_args;

static void test_entry(mg_coroutine *co)
{
    test_args *a = co->arg;
    for (int i = 0; i <= a->yields; i++) {
        if (*a->len < a->cap)
            a->log[(*a->len)++] = a->id;
        if (i < a->yields)
            coroutine_yield(co, MG_YIELD_READY);
    }
    free(a);
}

int mg_test_spawn(mg_worker *w, int id, int yields, int *log, int log_cap, int *log_len)
{
    test_args *a = malloc(sizeof(*a));
    if (!a)
        return -ENOMEM;
    *a = (test_args){id, yields, log, log_cap, log_len};
    mg_coroutine *co = coroutine_create(w, test_entry, a, -1);
    if (!co) {
        free(a);
        return -ENOMEM;
    }
    add_to_ready(w, co);
    return 0;
}

static __attribute__((noinline)) int burn_stack(int depth_left)
{
    volatile char pad[1024];
    pad[0] = (char)depth_left;
    if (depth_left <= 0)
        return pad[0];
    return burn_stack(depth_left - 1) + pad[0];
}

static void deep_entry(mg_coroutine *co)
{
    int kib = (int)(intptr_t)co->arg;
    burn_stack(kib);
}

int mg_test_spawn_deep(mg_worker *w, int bytes)
{
    mg_coroutine *co = coroutine_create(w, deep_entry, (void *)(intptr_t)(bytes / 1024), -1);
    if (!co)
        return -ENOMEM;
    add_to_ready(w, co);
    return 0;
}

int mg_test_run(mg_worker *w)
{
    uint64_t before = w->stats.switches;
    coroutine_thread_enter(w);
    while (w->ready_head)
        schedule(w);
    coroutine_thread_leave(w);
    return (int)(w->stats.switches - before);
}

/* A writer stopped in the middle of trace_push: RING + 5 records pushed
 * (record i carries co = i), then the stores of record RING + 5 begun in the
 * slot record 5 holds, head not yet moved.  The drain must return records
 * 6 .. RING + 4 and count the rest dropped, never the half-written slot. */
int mg_test_trace_torn(void)
{
    mg_server *srv = calloc(1, sizeof(*srv));
    mg_trace_rec *out = calloc(MG_TRACE_RING, sizeof(*out));
    int bad = -ENOMEM;
    if (!srv || !out || trace_ring_init(&srv->ring) < 0)
        goto done;
    for (uint64_t i = 0; i < MG_TRACE_RING + 5; i++)
        trace_push(&srv->ring, -1, 0, i, (int)i, 0);
    mg_trace_rec *slot = &srv->ring.recs[(MG_TRACE_RING + 5) & (MG_TRACE_RING - 1)];
    slot->co = MG_TRACE_RING + 5; /* trace_push's first stores; fd still record 5's */
    uint64_t dropped = 0;
    int n = mg_trace_drain(srv, -1, out, MG_TRACE_RING, &dropped);
    bad = 0;
    for (int i = 0; i < n; i++)
        bad += out[i].co != (uint64_t)i + 6 || out[i].fd != i + 6;
    bad += n != MG_TRACE_RING - 1 || dropped != 6;
done:
    if (srv)
        trace_ring_free(&srv->ring);
    free(srv);
    free(out);
    return bad;
}
