/* accesslog.c - the access log: a line per response, from per-worker buffers through one writer thread.
 *
 * Theory of operation.  A worker formats each line itself, with hand-written
 * appenders (no printf per field), into its own buffer: no lock on the
 * request path.  A buffer is handed to the writer when the next line would
 * not fit, and at the end of a loop iteration once its first line is
 * MG_ALOG_FLUSH_MS old (alog_tick; the worker's epoll timeout waits no longer
 * than that while lines are pending, so an idle worker's lines reach the
 * file within a fraction of a second).  The hand-over takes the log's mutex
 * once per buffer, not per line.
 *
 * One writer thread per server write()s the queued buffers to the fd, so a
 * slow or blocked disk (or a pipe nobody reads) never blocks a worker: the
 * queue is bounded (MG_ALOG_MAX_QUEUED bytes), and a buffer that would pass
 * the bound is dropped and its lines counted (mg_stats.log_dropped), as
 * nothing better can be done with lines that cannot be written in time.
 * Lines a write() refuses (a full disk, a reader gone) are dropped too and
 * said once per failing spell; the writer counts them in `unclaimed`, and
 * the next worker to pass alog_tick or hand_over adds them to its
 * log_dropped, so the stats add up to the lines that are not in the file.
 * A write that stops inside a line (a short write, then ENOSPC) leaves part
 * of it in the file: the next write starts with a newline, so that part is
 * a line of its own and the lines after it are whole
 * (tests/test_atk_logs.py).
 *
 * Rotation (mg_server_reopen_log, SIGUSR1): the writer first writes what is
 * queued to the old fd, then opens the path again and swaps, so every line
 * goes to exactly one of the two files.  Shutdown: the workers hand over
 * what they hold as their loops end, and alog_free() has the writer write
 * everything queued before it is joined; only an fd that takes nothing for
 * a second at that point (a pipe nobody reads) makes it drop, and say so.
 *
 * The fields and their escaping are nginx's (ngx_http_log_module.c):
 * combined is
 *   $remote_addr - $remote_user [$time_local] "$request" $status
 *   $body_bytes_sent "$http_referer" "$http_user_agent"
 * with '"', '\', and bytes below 0x20 or above 0x7e written as \xHH
 * (ngx_http_log_escape), so no byte a client sends can end a line or a
 * field.  json escapes as JSON strings must be escaped, keeps valid UTF-8
 * and writes any other byte as \u00HH, so every line is valid UTF-8 and
 * parses.  The pure-Python port (pyport/accesslog.py) writes the same bytes.
 * Tested by tests/test_access_log.py.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "http.h"

#define FREE_BUFS_MAX 16   /* standard buffers kept for reuse by the writer */
#define STUCK_MS      1000 /* at shutdown, an fd that takes nothing this long */

struct mg_alog {
    int fd;
    int regular; /* a regular file: write() whole buffers; else poll first */
    char *path;  /* NULL: never reopened (stdout) */
    int format;  /* mg_log_format */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* under lock */
    mg_alog_buf *head, *tail; /* the queue, oldest first */
    size_t queued;            /* bytes queued or being written */
    mg_alog_buf *free_bufs;
    int free_len;
    int reopen, stop;
    uint64_t dropped_late; /* lines the writer dropped at shutdown */
    int write_error;       /* an error was reported: say it once */
    int torn;              /* writer only: a failed write left part of a line */
    uint64_t unclaimed;    /* atomic: lines write() refused, not yet in a log_dropped */
    int gave_up;           /* stuck at shutdown: the rest is dropped at once */
};

int64_t alog_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------ the writer */

static int fd_is_regular(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t k = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        k++;
    return k;
}

static int stopping(mg_alog *lg)
{
    pthread_mutex_lock(&lg->lock);
    int s = lg->stop;
    pthread_mutex_unlock(&lg->lock);
    return s;
}

/* Write b whole.  Returns 0, or the lines not written (dropped). */
static uint64_t write_buf(mg_alog *lg, mg_alog_buf *b)
{
    size_t off = 0;
    int64_t idle_since = -1;
    while (off < b->len) {
        if (lg->gave_up)
            return count_lines(b->data + off, b->len - off);
        /* the end of the line a failed write cut, before any whole line */
        const char *src = lg->torn ? "\n" : b->data + off;
        size_t n = lg->torn ? 1 : b->len - off;
        if (!lg->regular) {
            /* a pipe, FIFO, tty or socket: wait for room with a timeout, so a
             * reader that went away cannot hold the writer past shutdown;
             * PIPE_BUF bytes fit once poll says writable */
            struct pollfd pfd = {.fd = lg->fd, .events = POLLOUT};
            int r = poll(&pfd, 1, 200);
            if (r == 0 || (r < 0 && errno == EINTR)) {
                if (stopping(lg)) {
                    int64_t now = mg_now_ms();
                    if (idle_since < 0)
                        idle_since = now;
                    else if (now - idle_since >= STUCK_MS)
                        lg->gave_up = 1;
                }
                continue;
            }
            if (n > PIPE_BUF)
                n = PIPE_BUF;
        }
        ssize_t w = write(lg->fd, src, n);
        if (w > 0) {
            if (lg->torn)
                lg->torn = 0;
            else
                off += (size_t)w;
            idle_since = -1;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !lg->regular)
            continue;
        if (!lg->write_error) {
            lg->write_error = 1;
            mg_log("minginx-cffi: access log: write: %s; lines are dropped while it fails",
                   w < 0 ? strerror(errno) : "wrote nothing");
        }
        if (off > 0 && b->data[off - 1] != '\n')
            lg->torn = 1; /* the cut line is dropped (counted below); its start stays */
        return count_lines(b->data + off, b->len - off);
    }
    lg->write_error = 0;
    return 0;
}

static void reopen_file(mg_alog *lg)
{
    int fd = open(lg->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        mg_log("minginx-cffi: access log: open(%s): %s; still writing to the old file", lg->path,
               strerror(errno));
        return;
    }
    close(lg->fd);
    lg->fd = fd;
    lg->regular = fd_is_regular(fd);
    lg->torn = 0; /* a cut line stays in the old file */
}

static void *writer_main(void *arg)
{
    mg_alog *lg = arg;
    sigset_t set;
    sigfillset(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* signals are the main thread's */

    pthread_mutex_lock(&lg->lock);
    for (;;) {
        while (!lg->head && !lg->reopen && !lg->stop)
            pthread_cond_wait(&lg->cond, &lg->lock);
        mg_alog_buf *list = lg->head;
        lg->head = lg->tail = NULL;
        int reopen = lg->reopen;
        lg->reopen = 0;
        pthread_mutex_unlock(&lg->lock);

        while (list) {
            mg_alog_buf *b = list;
            list = b->next;
            uint64_t lost = write_buf(lg, b);
            pthread_mutex_lock(&lg->lock);
            lg->queued -= b->len;
            if (lg->gave_up)
                lg->dropped_late += lost;
            else if (lost)
                __atomic_fetch_add(&lg->unclaimed, lost, __ATOMIC_RELAXED);
            if (b->cap == MG_ALOG_BUF && lg->free_len < FREE_BUFS_MAX) {
                b->next = lg->free_bufs;
                lg->free_bufs = b;
                lg->free_len++;
            } else {
                free(b);
            }
            pthread_mutex_unlock(&lg->lock);
        }
        /* after what was queued before the request: no line is lost or misplaced */
        if (reopen && lg->path)
            reopen_file(lg);

        pthread_mutex_lock(&lg->lock);
        if (lg->stop && !lg->head)
            break;
    }
    pthread_mutex_unlock(&lg->lock);
    return NULL;
}

int alog_new(mg_server *srv)
{
    const mg_config *cfg = &srv->cfg;
    if (!cfg->access_log)
        return 0;
    if (cfg->access_log_format < 0 || cfg->access_log_format >= MG_LOG_FORMAT_MAX)
        return -EINVAL;
    mg_alog *lg = calloc(1, sizeof(*lg));
    if (!lg)
        return -ENOMEM;
    int err;
    lg->fd = fcntl(cfg->access_log_fd, F_DUPFD_CLOEXEC, 3);
    if (lg->fd < 0) {
        err = -errno;
        goto fail_lg;
    }
    lg->regular = fd_is_regular(lg->fd);
    lg->format = cfg->access_log_format;
    if (cfg->access_log_path && !(lg->path = strdup(cfg->access_log_path))) {
        err = -ENOMEM;
        goto fail_fd;
    }
    pthread_mutex_init(&lg->lock, NULL);
    pthread_cond_init(&lg->cond, NULL);
    if ((err = -pthread_create(&lg->thread, NULL, writer_main, lg)) != 0)
        goto fail_sync;
    srv->alog = lg;
    return 0;

fail_sync:
    pthread_cond_destroy(&lg->cond);
    pthread_mutex_destroy(&lg->lock);
    free(lg->path);
fail_fd:
    close(lg->fd);
fail_lg:
    free(lg);
    return err;
}

void alog_free(mg_server *srv)
{
    mg_alog *lg = srv->alog;
    if (!lg)
        return;
    pthread_mutex_lock(&lg->lock);
    lg->stop = 1;
    pthread_cond_signal(&lg->cond);
    pthread_mutex_unlock(&lg->lock);
    pthread_join(lg->thread, NULL);
    if (lg->dropped_late)
        mg_log("minginx-cffi: access log: %llu lines dropped at shutdown: the log took nothing for %d ms",
               (unsigned long long)lg->dropped_late, STUCK_MS);
    if (lg->unclaimed) /* the workers have stopped: no stats will count these */
        mg_log("minginx-cffi: access log: %llu lines dropped at shutdown: the writes failed",
               (unsigned long long)lg->unclaimed);
    while (lg->free_bufs) {
        mg_alog_buf *b = lg->free_bufs;
        lg->free_bufs = b->next;
        free(b);
    }
    close(lg->fd);
    pthread_cond_destroy(&lg->cond);
    pthread_mutex_destroy(&lg->lock);
    free(lg->path);
    free(lg);
    srv->alog = NULL;
}

int mg_server_reopen_log(mg_server *srv)
{
    mg_alog *lg = srv->alog;
    if (!lg || !lg->path)
        return -EINVAL;
    pthread_mutex_lock(&lg->lock);
    lg->reopen = 1;
    pthread_cond_signal(&lg->cond);
    pthread_mutex_unlock(&lg->lock);
    return 0;
}

/* ------------------------------------------------------ the worker's side */

/* The lines the writer could not write, into this worker's log_dropped (a
 * relaxed load on the loop's path; the exchange only when there are some). */
static void claim_dropped(mg_worker *w)
{
    mg_alog *lg = w->alog;
    if (MG_UNLIKELY(__atomic_load_n(&lg->unclaimed, __ATOMIC_RELAXED) != 0))
        w->stats.log_dropped += __atomic_exchange_n(&lg->unclaimed, 0, __ATOMIC_RELAXED);
}

/* Queue the worker's buffer (or drop it past the bound) and give the
 * worker an empty one: a reused standard buffer, else NULL (malloc'ed on
 * the next line, outside the lock). */
static void hand_over(mg_worker *w)
{
    mg_alog *lg = w->alog;
    mg_alog_buf *b = w->alog_buf;
    if (!b || b->len == 0)
        return;
    pthread_mutex_lock(&lg->lock);
    if (lg->queued + b->len > MG_ALOG_MAX_QUEUED) {
        w->stats.log_dropped += b->lines;
        b->len = 0;
        b->lines = 0;
        pthread_mutex_unlock(&lg->lock);
        return;
    }
    b->next = NULL;
    if (lg->tail)
        lg->tail->next = b;
    else
        lg->head = b;
    lg->tail = b;
    lg->queued += b->len;
    pthread_cond_signal(&lg->cond);
    b = lg->free_bufs;
    if (b) {
        lg->free_bufs = b->next;
        lg->free_len--;
        b->len = 0;
        b->lines = 0;
    }
    pthread_mutex_unlock(&lg->lock);
    w->alog_buf = b;
}

/* Room for need more bytes in the worker's buffer: a pointer to write at, or NULL. */
static char *reserve(mg_worker *w, size_t need)
{
    mg_alog_buf *b = w->alog_buf;
    if (b && b->cap - b->len >= need)
        return b->data + b->len;
    hand_over(w);
    b = w->alog_buf;
    if (b && b->cap - b->len >= need)
        return b->data + b->len;
    /* none, or a line longer than a standard buffer (a huge hostile User-Agent) */
    size_t cap = need > MG_ALOG_BUF ? need : MG_ALOG_BUF;
    mg_alog_buf *nb = malloc(sizeof(*nb) + cap);
    if (!nb)
        return NULL;
    nb->next = NULL;
    nb->len = 0;
    nb->cap = cap;
    nb->lines = 0;
    if (b)
        free(b); /* an empty standard buffer too small for this line */
    w->alog_buf = nb;
    return nb->data;
}

int alog_tick(mg_worker *w, int force)
{
    mg_alog_buf *b = w->alog_buf;
    if (!w->alog)
        return -1;
    claim_dropped(w);
    if (!b || b->len == 0)
        return -1;
    int64_t age = w->now_ms - b->since_ms;
    if (force || age >= MG_ALOG_FLUSH_MS) {
        hand_over(w);
        return -1;
    }
    return (int)(MG_ALOG_FLUSH_MS - age);
}

/* ---- the appenders: each writes at p and returns the end ---- */

static const char HEX_UP[] = "0123456789ABCDEF";
static const char HEX_LO[] = "0123456789abcdef";

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_u64(char *p, uint64_t v)
{
    return p + format_u64(p, v, 10);
}

/* nginx's ngx_http_log_escape: '"', '\', and bytes outside 0x20..0x7e as \xHH. */
static char *put_escaped(char *p, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (MG_LIKELY(c >= 0x20 && c < 0x7f && c != '"' && c != '\\')) {
            *p++ = (char)c;
        } else {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = HEX_UP[c >> 4];
            *p++ = HEX_UP[c & 15];
        }
    }
    return p;
}

/* The length of a valid UTF-8 sequence at s[0..n) (2..4), or 0: RFC 3629's
 * table, the same bytes Python's strict decoder takes (no overlong forms,
 * no surrogates, nothing past U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* A JSON string's contents: '"' and '\' escaped, controls and 0x7f as
 * \u00hh, valid UTF-8 kept, any other byte as \u00hh. */
static char *put_json(char *p, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (MG_LIKELY(c >= 0x20 && c < 0x7f)) {
            if (c == '"' || c == '\\')
                *p++ = '\\';
            *p++ = (char)c;
            i++;
            continue;
        }
        size_t k = c >= 0x80 ? utf8_seq(u + i, n - i) : 0;
        if (k) {
            p = put(p, s + i, k);
            i += k;
            continue;
        }
        p = put(p, "\\u00", 4);
        *p++ = HEX_LO[c >> 4];
        *p++ = HEX_LO[c & 15];
        i++;
    }
    return p;
}

static const char MONTHS[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static char *put_2(char *p, int v)
{
    *p++ = (char)('0' + v / 10 % 10);
    *p++ = (char)('0' + v % 10);
    return p;
}

/* $time_local, "28/Nov/2026:03:01:59 +0000", made once a second per worker. */
static void refresh_time(mg_worker *w)
{
    time_t now = time(NULL);
    if (now == w->alog_sec)
        return;
    w->alog_sec = now;
    struct tm tm;
    localtime_r(&now, &tm);
    char *p = w->alog_time;
    p = put_2(p, tm.tm_mday);
    *p++ = '/';
    p = put(p, MONTHS[tm.tm_mon], 3);
    *p++ = '/';
    int year = tm.tm_year + 1900;
    p = put_2(p, year / 100);
    p = put_2(p, year % 100);
    *p++ = ':';
    p = put_2(p, tm.tm_hour);
    *p++ = ':';
    p = put_2(p, tm.tm_min);
    *p++ = ':';
    p = put_2(p, tm.tm_sec);
    long off = tm.tm_gmtoff / 60;
    *p++ = ' ';
    *p++ = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    p = put_2(p, (int)(off / 60));
    p = put_2(p, (int)(off % 60));
    w->alog_time_len = (int)(p - w->alog_time);
}

typedef struct {
    const char *addr;
    const char *request; /* NULL: "-" */
    size_t request_len;
    int status;
    uint64_t body_bytes;
    const char *referer, *ua; /* NULL: absent */
    size_t referer_len, ua_len;
    int64_t time_us; /* json's request_time */
} alog_fields;

static void emit(mg_worker *w, const alog_fields *f)
{
    int json = w->alog->format == MG_LOG_JSON;
    size_t addr_len = strlen(f->addr);
    size_t per = json ? 6 : 4; /* the most one byte can become */
    size_t need = 256 + addr_len * per + (f->request_len + f->referer_len + f->ua_len) * per;
    char *start = reserve(w, need);
    if (!start) {
        w->stats.log_dropped++;
        return;
    }
    refresh_time(w);
    char *p = start;
    if (!json) {
        p = put_escaped(p, f->addr, addr_len);
        p = put(p, " - - [", 6);
        p = put(p, w->alog_time, (size_t)w->alog_time_len);
        p = put(p, "] \"", 3);
        p = f->request ? put_escaped(p, f->request, f->request_len) : put(p, "-", 1);
        p = put(p, "\" ", 2);
        p = put_u64(p, (uint64_t)f->status);
        *p++ = ' ';
        p = put_u64(p, f->body_bytes);
        p = put(p, " \"", 2);
        p = f->referer ? put_escaped(p, f->referer, f->referer_len) : put(p, "-", 1);
        p = put(p, "\" \"", 3);
        p = f->ua ? put_escaped(p, f->ua, f->ua_len) : put(p, "-", 1);
        p = put(p, "\"\n", 2);
    } else {
        /* absent values are "", as nginx's escape=json writes them */
        p = put(p, "{\"remote_addr\":\"", 16);
        p = put_json(p, f->addr, addr_len);
        p = put(p, "\",\"remote_user\":\"\",\"time_local\":\"", 33);
        p = put(p, w->alog_time, (size_t)w->alog_time_len);
        p = put(p, "\",\"request\":\"", 13);
        if (f->request)
            p = put_json(p, f->request, f->request_len);
        p = put(p, "\",\"status\":", 11);
        p = put_u64(p, (uint64_t)f->status);
        p = put(p, ",\"body_bytes_sent\":", 19);
        p = put_u64(p, f->body_bytes);
        p = put(p, ",\"http_referer\":\"", 17);
        if (f->referer)
            p = put_json(p, f->referer, f->referer_len);
        p = put(p, "\",\"http_user_agent\":\"", 21);
        if (f->ua)
            p = put_json(p, f->ua, f->ua_len);
        p = put(p, "\",\"request_time\":", 17);
        uint64_t ms = f->time_us > 0 ? (uint64_t)f->time_us / 1000 : 0;
        p = put_u64(p, ms / 1000);
        *p++ = '.';
        *p++ = (char)('0' + ms % 1000 / 100);
        p = put_2(p, (int)(ms % 100));
        p = put(p, "}\n", 2);
    }
    mg_alog_buf *b = w->alog_buf;
    if (b->len == 0)
        b->since_ms = w->now_ms;
    b->len += (size_t)(p - start);
    b->lines++;
    w->stats.log_lines++;
}

/* The request line as received: the bytes before the first CR or LF, at
 * most MG_MAX_REQUEST_LINE of them (a 414's line is cut there). */
static size_t request_line(const char *data, size_t len)
{
    if (len > MG_MAX_REQUEST_LINE)
        len = MG_MAX_REQUEST_LINE;
    for (size_t i = 0; i < len; i++)
        if (data[i] == '\r' || data[i] == '\n')
            return i;
    return len;
}

void alog_request(mg_coroutine *co, mg_request *req, int status)
{
    mg_worker *w = co->worker;
    alog_fields f = {0};
    f.addr = conn_client_addr(co);
    if (co->conn->rb && co->conn->rb->len) {
        f.request = co->conn->rb->data;
        f.request_len = request_line(co->conn->rb->data, co->conn->rb->len);
        if (f.request_len == 0)
            f.request = NULL;
    }
    /* nginx's 499: the client went away before any response began */
    f.status = status ? status : 499;
    uint64_t sent = co->conn->sent - co->log_sent0;
    f.body_bytes = status && sent > co->head_bytes ? sent - co->head_bytes : 0;
    if (req) {
        /* two fields the server does not act on: a scan, done only for the log */
        for (int i = 0; i < req->num_headers; i++) {
            const mg_header *h = &req->headers[i];
            if (h->name.len == 7 && !f.referer && eq_ci(h->name.p, 7, "referer")) {
                f.referer = h->value.p;
                f.referer_len = h->value.len;
            } else if (h->name.len == 10 && !f.ua && eq_ci(h->name.p, 10, "user-agent")) {
                f.ua = h->value.p;
                f.ua_len = h->value.len;
            }
        }
    }
    if (w->alog->format == MG_LOG_JSON)
        f.time_us = alog_now_us() - co->log_start_us;
    emit(w, &f);
}

void alog_rejected(mg_worker *w, int fd, int status, uint64_t body_bytes)
{
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    char addr[48] = "";
    if (getpeername(fd, (struct sockaddr *)&sa, &sl) == 0) {
        if (sa.ss_family == AF_UNIX)
            strcpy(addr, "unix:");
        else if (sa.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, addr, sizeof(addr));
        else if (sa.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, addr, sizeof(addr));
    }
    alog_fields f = {.addr = addr, .status = status, .body_bytes = body_bytes};
    emit(w, &f);
}
