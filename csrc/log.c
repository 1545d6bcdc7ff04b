/* log.c - the error log's C half: one record, one write(2), in minginx_cffi/log.py's layout.
 *
 *     2026-11-28T06:41:00.123+0100 [error] [4242] minginx: epoll_wait: ...
 *
 * Local time to the millisecond with the numeric UTC offset, the level, the
 * pid, the message.  The whole line is formatted on the stack and written
 * with one write() (atomic on a pipe up to PIPE_BUF), so C's lines never run
 * together with Python's, another worker's or another process's.  Callable
 * from any thread, never takes the GIL.  Tested by tests/test_log.py.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* --log-level (mg_log_set_level); written once before the workers start */
static int log_level = MG_LOG_INFO;
/* the UTC offset in seconds, for mg_log_signal_safe (localtime_r is not async-signal-safe) */
static long log_gmtoff;

static void note_gmtoff(void)
{
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm))
        log_gmtoff = tm.tm_gmtoff;
}

void mg_log_set_level(int level)
{
    log_level = level;
    note_gmtoff();
}

static const char *level_name(int level)
{
    if (level >= MG_LOG_CRITICAL)
        return "critical";
    if (level >= MG_LOG_ERROR)
        return "error";
    if (level >= MG_LOG_WARNING)
        return "warning";
    if (level >= MG_LOG_INFO)
        return "info";
    return "debug";
}

static void log_va(int level, const char *fmt, va_list ap)
{
    if (level < log_level)
        return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ld", ts.tv_nsec / 1000000);
    n += strftime(line + n, sizeof(line) - n, "%z", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, " [%s] [%d] ", level_name(level), (int)getpid());
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    if (m < 0)
        return;
    n += (size_t)m;
    if (n > sizeof(line) - 2) /* cut to fit; the newline always ends it */
        n = sizeof(line) - 2;
    line[n++] = '\n';
    (void)!write(STDERR_FILENO, line, n);
}

void mg_log_at(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_va(level, fmt, ap);
    va_end(ap);
}

void mg_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_va(MG_LOG_ERROR, fmt, ap);
    va_end(ap);
}

/* Digits of v, zero-padded to width, at *p (async-signal-safe). */
static void put_digits(char **p, long v, int width)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0 && n < (int)sizeof(tmp));
    while (n < width && n < (int)sizeof(tmp))
        tmp[n++] = '0';
    while (n > 0)
        *(*p)++ = tmp[--n];
}

void mg_log_signal_safe(int level, const char *msg, size_t len)
{
    /* Only async-signal-safe calls (clock_gettime, getpid, write): the local time
     * comes from the UTC offset noted at start (a DST change since then is not seen). */
    char line[512], *p = line;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long t = (long long)ts.tv_sec + log_gmtoff;
    long long days = t / 86400, secs = t % 86400;
    if (secs < 0)
        secs += 86400, days--;
    /* civil_from_days (Howard Hinnant's algorithm), for days since 1970-01-01 */
    long long z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    long d = (long)(doy - (153 * mp + 2) / 5 + 1), m = (long)(mp < 10 ? mp + 3 : mp - 9);
    long y = (long)(yoe + era * 400 + (m <= 2));
    put_digits(&p, y, 4), *p++ = '-', put_digits(&p, m, 2), *p++ = '-', put_digits(&p, d, 2);
    *p++ = 'T';
    put_digits(&p, (long)(secs / 3600), 2), *p++ = ':';
    put_digits(&p, (long)(secs / 60 % 60), 2), *p++ = ':';
    put_digits(&p, (long)(secs % 60), 2), *p++ = '.';
    put_digits(&p, ts.tv_nsec / 1000000, 3);
    long off = log_gmtoff < 0 ? -log_gmtoff : log_gmtoff;
    *p++ = log_gmtoff < 0 ? '-' : '+';
    put_digits(&p, off / 3600, 2), put_digits(&p, off / 60 % 60, 2);
    *p++ = ' ', *p++ = '[';
    for (const char *s = level_name(level); *s; s++)
        *p++ = *s;
    *p++ = ']', *p++ = ' ', *p++ = '[';
    put_digits(&p, (long)getpid(), 1);
    *p++ = ']', *p++ = ' ';
    size_t room = (size_t)(line + sizeof(line) - 1 - p);
    if (len > room)
        len = room;
    memcpy(p, msg, len), p += len;
    if (p[-1] != '\n')
        *p++ = '\n';
    (void)!write(STDERR_FILENO, line, (size_t)(p - line));
}
