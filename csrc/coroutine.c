/* coroutine.c - stackful coroutines (ucontext, or the fast x86-64 switch): coroutine_create, trampoline_start, coroutine_destroy.
 *
 * Memory: each coroutine lives in one anonymous mapping,
 *
 *     region                                                         region + region_size
 *     | guard (PROT_NONE, GUARD_SIZE) | stack, grows down <-- | mg_conn | mg_coroutine |
 *
 * (the connection's state, co->conn, lives as long as its coroutine: a park
 * ends both, keeping an mg_parked), so a stack overflow faults on the guard instead of silently writing over a
 * neighbour, and the structs and the first stack frames share a page.  The
 * guard is four pages, not one: the largest frame in csrc/ is about 4.2 KiB
 * (cache.c entry_fresh, gcc -fstack-usage), and a frame larger than the guard
 * could step over it into the next mapping.  _build.py adds
 * -fstack-clash-protection too, so our own big frames touch every page on the
 * way down; the guard covers library code built without it.  PROT_NONE pages
 * cost address space only, never RSS.
 *
 * Pages are touched only when used: an idle keep-alive connection costs about
 * two pages.  Finished regions are parked in a per-worker pool and reused, so
 * the steady state makes no mmap/munmap calls (the seed's "thread-local pools
 * instead of malloc in hot paths").  A region goes into the pool emptied
 * (region_put: MADV_DONTNEED), so a parked stack neither keeps the last
 * request's bytes for the next coroutine nor holds on to its RSS.
 *
 * Switching: schedule() resumes a coroutine with swapcontext(sched -> co); the
 * coroutine gives the CPU back with swapcontext(co -> sched).  glibc's
 * swapcontext also saves and restores the signal mask, a system call per
 * switch; that is the price of portability here.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

/* valgrind, likewise, must know each coroutine stack, or it takes every switch
 * for a wild stack-pointer jump (the macros cost nothing outside valgrind). */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define MG_VALGRIND 1
#endif
#endif
#ifndef MG_VALGRIND
#define VALGRIND_STACK_REGISTER(lo, hi) 0u
#define VALGRIND_STACK_DEREGISTER(id)   ((void)(id))
#endif

/* AddressSanitizer must be told when the stack changes under it (make
 * test-asan): each switch is bracketed by start/finish_switch_fiber. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ASAN_START(save, bottom, size)  __sanitizer_start_switch_fiber((save), (bottom), (size))
#define ASAN_FINISH(save, bottom, size) __sanitizer_finish_switch_fiber((save), (bottom), (size))
/* A coroutine destroyed while parked never unwinds: its frames' redzones stay
 * poisoned in ASan's shadow, and whatever is mapped at that address later
 * (a pooled stack, CPython's arenas) would trip over them. */
#define ASAN_UNPOISON(addr, size)       ASAN_UNPOISON_MEMORY_REGION((addr), (size))
#else
#define ASAN_START(save, bottom, size)  ((void)(save), (void)(bottom), (void)(size))
#define ASAN_FINISH(save, bottom, size) ((void)(save), (void)(bottom), (void)(size))
#define ASAN_UNPOISON(addr, size)       ((void)(addr), (void)(size))
#endif

#include "cache.h"

_Static_assert(sizeof(void *) <= 2 * sizeof(unsigned int),
               "trampoline_start passes a pointer as two unsigned ints");

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

/* bytes of PROT_NONE below each stack (see the top of the file) */
#define GUARD_PAGES 4
static size_t guard_size(void)
{
    return GUARD_PAGES * page_size();
}

/* ------------------------------------------------------ the fast switch */
/* --switch fast: the same switch without the signal-mask system call glibc's
 * swapcontext makes each time (about 270 ns here).  mg_fast_switch(&from_sp,
 * to_sp) pushes the callee-saved registers (and the SSE/x87 control words)
 * on the current stack, saves the stack pointer, loads the other one and
 * pops the same registers there: what a function call would preserve is all
 * that has to survive, since the switch looks like a call to its caller.
 * The coroutines of a thread never change the signal mask, so nothing is
 * lost by leaving it alone.  x86-64 only; elsewhere --switch fast falls back
 * to ucontext. */
#if defined(__x86_64__)
#define MG_HAVE_FAST_SWITCH 1
void mg_fast_switch(void **from_sp, void *to_sp);
void mg_fast_entry(void);
__asm__(".text\n"
        ".globl mg_fast_switch\n.hidden mg_fast_switch\n.type mg_fast_switch,@function\n"
        "mg_fast_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n" /* *from_sp = rsp */
        "  movq %rsi, %rsp\n"   /* rsp = to_sp */
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size mg_fast_switch,.-mg_fast_switch\n"
        /* a new coroutine's first "return" lands here, its pointer in rbx */
        ".globl mg_fast_entry\n.hidden mg_fast_entry\n.type mg_fast_entry,@function\n"
        "mg_fast_entry:\n"
        "  movq %rbx, %rdi\n  andq $-16, %rsp\n  call fast_trampoline\n  ud2\n"
        ".size mg_fast_entry,.-mg_fast_entry\n");
#else
#define MG_HAVE_FAST_SWITCH 0
#endif

static void trampoline_body(mg_coroutine *co);

#if MG_HAVE_FAST_SWITCH
/* Called by mg_fast_entry on the coroutine's stack; never returns. */
__attribute__((used, visibility("hidden"))) void fast_trampoline(mg_coroutine *co);
void fast_trampoline(mg_coroutine *co)
{
    trampoline_body(co);
}

/* Lay out the new stack as mg_fast_switch expects to find a switched-out
 * one: control words, six registers (rbx = co), then mg_fast_entry as the
 * return address. */
static void fast_context_init(mg_coroutine *co, char *stack_lo, uintptr_t top)
{
    uint64_t *sp = (uint64_t *)(top & ~(uintptr_t)15);
    MG_UNUSED(stack_lo);
    *--sp = 0; /* keeps the entry's frame aligned */
    *--sp = (uint64_t)(uintptr_t)mg_fast_entry;
    *--sp = 0;                       /* rbp */
    *--sp = (uint64_t)(uintptr_t)co; /* rbx */
    *--sp = 0;                       /* r12 */
    *--sp = 0;                       /* r13 */
    *--sp = 0;                       /* r14 */
    *--sp = 0;                       /* r15 */
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    *--sp = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);
    co->sp = sp;
}
#endif

/* makecontext() only promises to pass int arguments, so the coroutine pointer
 * travels as two 32-bit halves and is put back together here. */
static void trampoline_start(unsigned int lo, unsigned int hi)
{
    trampoline_body((mg_coroutine *)(((uintptr_t)hi << 32) | (uintptr_t)lo));
}

/* The part of trampoline_start both switches share. */
static void trampoline_body(mg_coroutine *co)
{
    mg_worker *w = co->worker;

    ASAN_FINISH(NULL, &w->asan_sched_bottom, &w->asan_sched_size);
    TRACE(w, MG_EV_TRAMPOLINE_START, co, co->conn->fd, 0);
    co->entry(co);
    co->finished = 1;
    TRACE(w, MG_EV_FINISHED, co, co->conn->fd, 0);
    /* Back to schedule(), which sees finished and calls coroutine_destroy().
     * This context is never resumed again (NULL: ASan may forget this stack). */
    ASAN_START(NULL, w->asan_sched_bottom, w->asan_sched_size);
#if MG_HAVE_FAST_SWITCH
    if (w->fast_switch)
        mg_fast_switch(&co->sp, w->sched_sp);
#endif
    swapcontext(&co->ctx, &w->sched_ctx);
    mg_log_at(MG_LOG_CRITICAL, "minginx-cffi: finished coroutine %llu was resumed",
              (unsigned long long)co->id);
    abort();
}

static void *region_get(mg_worker *w)
{
    if (w->stack_pool_len > 0) {
        w->stats.stack_pool = (uint64_t)--w->stack_pool_len;
        return w->stack_pool[w->stack_pool_len];
    }
    size_t size = guard_size() + w->stack_size;
    void *region = mmap(NULL, size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (region == MAP_FAILED)
        return NULL;
    if (mprotect(region, guard_size(), PROT_NONE) < 0) {
        munmap(region, size);
        return NULL;
    }
    w->stats.stacks_mapped++;
    return region;
}

/* Park a finished coroutine's region, emptied first.  MADV_DONTNEED, not
 * MADV_FREE: on a private anonymous mapping DONTNEED drops the pages at once,
 * so the next coroutine on this stack reads zeros (never the last request's
 * bytes) and the RSS falls now; MADV_FREE would keep both until the kernel
 * feels memory pressure, and the old bytes stay readable until then.  The
 * cost is one madvise per finished connection and a few zero-page faults
 * when the stack is used again (an idle connection touches about two pages).
 * Tested by tests/test_coroutine.py::test_pooled_stacks_give_their_pages_back. */
static void region_put(mg_worker *w, void *region)
{
    ASAN_UNPOISON((char *)region + guard_size(), w->stack_size);
    if (w->stack_pool_len < MG_STACK_POOL_MAX && !w->no_stack_pool) {
        if (madvise((char *)region + guard_size(), w->stack_size, MADV_DONTNEED) < 0) {
            munmap(region, guard_size() + w->stack_size); /* cannot empty it: not pooled */
            w->stats.stacks_mapped--;
            return;
        }
        w->stack_pool[w->stack_pool_len++] = region;
        w->stats.stack_pool = (uint64_t)w->stack_pool_len;
        return;
    }
    munmap(region, guard_size() + w->stack_size);
    w->stats.stacks_mapped--;
}

void coroutine_pool_trim(mg_worker *w, int keep)
{
    while (w->stack_pool_len > keep) {
        munmap(w->stack_pool[--w->stack_pool_len], guard_size() + w->stack_size);
        w->stats.stacks_mapped--;
    }
    w->stats.stack_pool = (uint64_t)w->stack_pool_len;
}

void coroutine_pool_drain(mg_worker *w)
{
    coroutine_pool_trim(w, 0);
}

/* getcontext() returns twice as far as the compiler knows: keep it out of
 * coroutine_create() so that function's locals are not "clobbered".
 *
 * glibc's getcontext() makes an rt_sigprocmask system call to save the signal
 * mask, and the mask of a worker's coroutines is always the worker thread's
 * own (nothing here changes it).  So it runs once per worker, into a template,
 * and each coroutine_create() copies the template before makecontext(): one
 * system call fewer per coroutine (per connection, or per request once a
 * connection's coroutine is made per request).  The copy's fpregs pointer
 * still points into the template; on x86-64 it must point at the copy's own
 * save area, which swapcontext() fills and setcontext() reads. */
static __attribute__((noinline)) int context_init(mg_worker *w, ucontext_t *ctx)
{
    if (!w->ctx_template_ok) {
        if (getcontext(&w->ctx_template) < 0)
            return -1;
        w->ctx_template_ok = 1;
    }
    memcpy(ctx, &w->ctx_template, sizeof(*ctx));
#if defined(__x86_64__) && defined(__GLIBC__)
    ctx->uc_mcontext.fpregs = &ctx->__fpregs_mem;
#endif
    return 0;
}

mg_coroutine *coroutine_create(mg_worker *w, mg_entry_fn entry, void *arg, int fd)
{
    return coroutine_create_as(w, entry, arg, fd, 0);
}

mg_coroutine *coroutine_create_as(mg_worker *w, mg_entry_fn entry, void *arg, int fd, uint64_t id)
{
    void *region = region_get(w);
    if (!region)
        return NULL;

    size_t region_size = guard_size() + w->stack_size;
    uintptr_t top = ((uintptr_t)region + region_size - sizeof(mg_coroutine)) & ~(uintptr_t)63;
    mg_coroutine *co = (mg_coroutine *)top;
    memset(co, 0, sizeof(*co));
    /* its connection just below it; the stack below that */
    top = (top - sizeof(mg_conn)) & ~(uintptr_t)63;
    mg_conn *conn = (mg_conn *)top;
    memset(conn, 0, sizeof(*conn));
    co->conn = conn;
    co->worker = w;
    co->entry = entry;
    co->arg = arg;
    co->id = id ? id : ++w->next_id;
    co->conn->fd = fd;
    co->conn->tp = w->tp; /* (an unpark gives back the parked connection's) */
    co->waiting = -1;
    co->region = region;
    co->region_size = region_size;
    co->vg_stack = VALGRIND_STACK_REGISTER((char *)region + guard_size(), (char *)conn);

    char *stack_lo = (char *)region + guard_size();
#if MG_HAVE_FAST_SWITCH
    if (w->fast_switch) {
        co->ctx.uc_stack.ss_sp = stack_lo; /* ASan reads the bounds from here */
        co->ctx.uc_stack.ss_size = (size_t)((top & ~(uintptr_t)15) - (uintptr_t)stack_lo);
        fast_context_init(co, stack_lo, top);
        goto made;
    }
#endif
    if (context_init(w, &co->ctx) < 0) {
        region_put(w, region);
        return NULL;
    }
    co->ctx.uc_stack.ss_sp = stack_lo;
    co->ctx.uc_stack.ss_size = (size_t)((top & ~(uintptr_t)15) - (uintptr_t)stack_lo);
    co->ctx.uc_link = NULL; /* trampoline_start never returns */
    uintptr_t p = (uintptr_t)co;
    makecontext(&co->ctx, (void (*)(void))trampoline_start, 2, (unsigned int)(p & 0xffffffffu),
                (unsigned int)(p >> 32));
#if MG_HAVE_FAST_SWITCH
made:
#endif

    /* the worker's list of live coroutines */
    co->next = w->all;
    if (w->all)
        w->all->prev = co;
    w->all = co;
    if (fd >= 0)
        w->fd_table[fd] = co;
    TRACE(w, MG_EV_COROUTINE_CREATE, co, fd, 0);
    w->stats.coroutines_alive++;
    w->stats.coroutines_total++;
    return co;
}

void coroutine_destroy(mg_coroutine *co)
{
    mg_worker *w = co->worker;

    TRACE(w, MG_EV_COROUTINE_DESTROY, co, co->conn->fd, 0);
    timer_clear(co);
    worker_idle_unlink(co);
    if (co->prev)
        co->prev->next = co->next;
    else
        w->all = co->next;
    if (co->next)
        co->next->prev = co->prev;

    transport_free(co->conn->tp, co->conn->tp_ctx); /* (parked: the mg_parked has it now) */
    if (co->conn->fd >= 0) {
        w->fd_table[co->conn->fd] = NULL;
        close(co->conn->fd); /* also removes it from the epoll set */
    }
    if (co->centry)
        file_release(w, co->centry);
    VALGRIND_STACK_DEREGISTER(co->vg_stack);
    free(co->body_buf);
    if (co->conn->rb)
        reqbuf_put(w, co->conn->rb);
    if (co->xs)
        xstate_put(w, co->xs);
    w->stats.coroutines_alive--;
    region_put(w, co->region);
}

/* The worker running on this thread, for the guard-page handler below (its
 * current coroutine is w->current).  Set once per thread, not per switch: a
 * __thread in a shared object costs a __tls_get_addr call per access. */
static __thread mg_worker *tls_worker;

void coroutine_resume(mg_worker *w, mg_coroutine *co)
{
    w->current = co;
    co->waiting = -1;
    w->stats.switches++;
    TRACE(w, MG_EV_SCHEDULE, co, co->conn->fd, 0);
    ASAN_START(&w->asan_fake_stack, co->ctx.uc_stack.ss_sp, co->ctx.uc_stack.ss_size);
#if MG_HAVE_FAST_SWITCH
    if (w->fast_switch)
        mg_fast_switch(&w->sched_sp, co->sp);
    else
#endif
        if (swapcontext(&w->sched_ctx, &co->ctx) < 0) {
        mg_log_at(MG_LOG_CRITICAL, "minginx-cffi: swapcontext: %s", strerror(errno));
        abort();
    }
    ASAN_FINISH(w->asan_fake_stack, NULL, NULL);
    w->current = NULL;
}

/* io: the trace names a read's wait as the recv_async that found nothing (the
 * seed's step 5: "recv_async finds no data, calls yield").  Both callers pass a
 * constant, and the choice is made only in the traced branch: nothing added
 * with the trace off. */
static inline __attribute__((always_inline)) void yield_to_schedule(mg_coroutine *co, int reason, int io)
{
    mg_worker *w = co->worker;

    w->stats.yields[reason]++;
    if (io)
        TRACE(w, reason == MG_YIELD_READ ? MG_EV_RECV_ASYNC : MG_EV_YIELD, co, co->conn->fd,
              reason == MG_YIELD_READ ? -EAGAIN : reason);
    else
        TRACE(w, MG_EV_YIELD, co, co->conn->fd, reason);
    co->waiting = reason;
    if (reason == MG_YIELD_READY) {
        add_to_ready_tail(w, co); /* letting the others run: behind them, whatever the policy */
    } else if (reason == MG_YIELD_PYTHON) {
        co->next_ready = NULL;
        if (w->py_tail)
            w->py_tail->next_ready = co;
        else
            w->py_head = co;
        w->py_tail = co;
    }
    ASAN_START(&co->asan_fake_stack, w->asan_sched_bottom, w->asan_sched_size);
#if MG_HAVE_FAST_SWITCH
    if (w->fast_switch)
        mg_fast_switch(&co->sp, w->sched_sp);
    else
#endif
        if (swapcontext(&co->ctx, &w->sched_ctx) < 0) {
        mg_log_at(MG_LOG_CRITICAL, "minginx-cffi: swapcontext: %s", strerror(errno));
        abort();
    }
    ASAN_FINISH(co->asan_fake_stack, &w->asan_sched_bottom, &w->asan_sched_size);
}

void coroutine_yield(mg_coroutine *co, int reason)
{
    yield_to_schedule(co, reason, 0);
}

void coroutine_yield_io(mg_coroutine *co, int reason)
{
    yield_to_schedule(co, reason, 1);
}

/* ---------------------------------------------------- guard-page reports */
/* A coroutine that outgrows its stack faults on the PROT_NONE page below it.
 * That is caught here, on an alternate signal stack (the faulting stack is
 * unusable), reported in plain words, and the process aborts: better than
 * writing over a neighbour.  Faults that are not ours go to whatever handler
 * was there before (Python's faulthandler, say).  Tested by
 * tests/test_coroutine.py::test_stack_overflow_hits_the_guard_page. */

static struct sigaction previous_segv;

static void put_num(char **p, uint64_t v)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i > 0)
        *(*p)++ = tmp[--i];
}

/* Not a coroutine's overflow: this one fault goes to the handler that was
 * there before us, and ours stays installed for the next one (putting the old
 * handler back for good, as this did once, left every later overflow
 * unreported).  A previous handler is called in place, as a chained handler
 * is (it may dump a traceback and re-raise, as Python's faulthandler does, or
 * fix the fault and return).  With no previous handler the fault must still
 * kill the process as SIGSEGV would: the default action is put back and the
 * signal raised again; it is blocked while we run, so it is delivered, and
 * kills, the moment this handler returns (a real fault would also recur on
 * the faulting instruction).  Tested by tests/test_coroutine.py::
 * test_a_foreign_fault_does_not_unhook_the_overflow_report and
 * test_a_fault_outside_coroutines_still_kills. */
static void forward_fault(int sig, siginfo_t *si, void *uctx)
{
    if (previous_segv.sa_flags & SA_SIGINFO) {
        if (previous_segv.sa_sigaction) {
            previous_segv.sa_sigaction(sig, si, uctx);
            return;
        }
    } else if (previous_segv.sa_handler != SIG_DFL && previous_segv.sa_handler != SIG_IGN) {
        previous_segv.sa_handler(sig);
        return;
    }
    /* SIG_DFL, or SIG_IGN (which the kernel does not honour for a real fault) */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_segv(int sig, siginfo_t *si, void *uctx)
{
    mg_worker *w = tls_worker;
    mg_coroutine *co = w ? w->current : NULL;
    char *addr = si->si_addr;
    if (co && si->si_code > 0 && addr >= (char *)co->region - 65536 &&
        addr < (char *)co->region + guard_size()) {
        char msg[256], *p = msg;
        static const char a[] = "minginx-cffi: coroutine ";
        static const char b[] = " overflowed its stack of ";
        static const char c[] = " bytes (it hit the guard page); run with a larger --stack-size\n";
        memcpy(p, a, sizeof(a) - 1), p += sizeof(a) - 1;
        put_num(&p, co->id);
        memcpy(p, b, sizeof(b) - 1), p += sizeof(b) - 1;
        put_num(&p, co->worker->stack_size);
        memcpy(p, c, sizeof(c) - 1), p += sizeof(c) - 1;
        mg_log_signal_safe(MG_LOG_CRITICAL, msg, (size_t)(p - msg));
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    forward_fault(sig, si, uctx);
}

static void install_segv_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
}

void coroutine_thread_enter(mg_worker *w)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_segv_handler);
    tls_worker = w;
    if (!w->altstack) {
        w->altstack =
            mmap(NULL, MG_ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (w->altstack == MAP_FAILED) {
            w->altstack = NULL;
            return;
        }
    }
    stack_t ss = {.ss_sp = w->altstack, .ss_size = MG_ALTSTACK_SIZE, .ss_flags = 0};
    sigaltstack(&ss, &w->old_altstack);
}

void coroutine_thread_leave(mg_worker *w)
{
    tls_worker = NULL;
    if (w->altstack)
        sigaltstack(&w->old_altstack, NULL);
}
