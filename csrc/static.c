/* static.c - the static-file middleware: map a path into the root safely, and answer with sendfile.
 *
 * Safety of paths, in two independent layers:
 *   1. the path is percent-decoded (bad escapes and %00 are 400) and
 *      normalised segment by segment ("." dropped, ".." pops; popping above
 *      the root is 400), so what reaches the file system has no ".." at all;
 *   2. the file is opened with openat2(root_fd, path, RESOLVE_BENEATH), so
 *      the kernel itself refuses any resolution, symlinks included, that
 *      would leave the root (unless --follow-symlinks).
 * Tested by tests/test_static.py (traversal corpus).
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "http.h"

#define SERVER_HDR "Server: minginx-cffi\r\n"
#define ALLOW_HDR "Allow: GET, HEAD, OPTIONS\r\n"

/* ------------------------------------------------------ a response head */

typedef struct {
    char *p, *end;
} outbuf;

static void put_mem(outbuf *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) < n)
        n = (size_t)(o->end - o->p);   /* never overflows; heads are far below the size */
    memcpy(o->p, s, n);
    o->p += n;
}

static void put_str(outbuf *o, const char *s)
{
    put_mem(o, s, strlen(s));
}

static void put_u64(outbuf *o, uint64_t v, int base)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = "0123456789abcdef"[v % (uint64_t)base];
        v /= (uint64_t)base;
    } while (v);
    while (i > 0 && o->p < o->end)
        *o->p++ = tmp[--i];
}

/* "HTTP/1.1 200 OK\r\nServer: ...\r\nDate: ...\r\n" */
static void put_status(outbuf *o, mg_worker *w, int status)
{
    put_str(o, "HTTP/1.1 ");
    put_u64(o, (uint64_t)status, 10);
    put_str(o, " ");
    put_str(o, http_reason(status));
    put_str(o, "\r\n" SERVER_HDR);
    worker_refresh_date(w);
    put_mem(o, w->date_hdr, (size_t)w->date_len);
}

static void put_connection(outbuf *o, int keep_alive)
{
    put_str(o, keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
}

static char *out_area(mg_coroutine *co)
{
    return co->rb->out;
}

ssize_t send_error(mg_coroutine *co, int status, int keep_alive, int head_only)
{
    char *start = out_area(co);
    outbuf o = {start, start + sizeof(co->rb->out)};
    char body[160];
    outbuf b = {body, body + sizeof(body)};

    put_str(&b, "<html><head><title>");
    put_u64(&b, (uint64_t)status, 10);
    put_str(&b, " ");
    put_str(&b, http_reason(status));
    put_str(&b, "</title></head><body><h1>");
    put_u64(&b, (uint64_t)status, 10);
    put_str(&b, " ");
    put_str(&b, http_reason(status));
    put_str(&b, "</h1></body></html>\n");

    put_status(&o, co->worker, status);
    if (status == 405)
        put_str(&o, ALLOW_HDR);
    put_str(&o, "Content-Type: text/html; charset=utf-8\r\nContent-Length: ");
    put_u64(&o, (uint64_t)(b.p - body), 10);
    put_str(&o, "\r\n");
    put_connection(&o, keep_alive);
    if (!head_only)
        put_mem(&o, body, (size_t)(b.p - body));
    co->worker->stats.requests++;
    return send_async(co, start, (size_t)(o.p - start));
}

/* ------------------------------------------------------------ MIME types */

static const struct {
    const char *ext;
    const char *type;
} MIME[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"bmp", "image/bmp"},
    {"wasm", "application/wasm"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
    {NULL, NULL},   /* the sentinel is last: every entry above is reachable */
};

static const char *mime_type(const char *path, size_t len)
{
    const char *dot = NULL;
    for (size_t i = len; i > 0; i--) {
        if (path[i - 1] == '.') {
            dot = path + i;
            break;
        }
        if (path[i - 1] == '/')
            break;
    }
    if (dot) {
        size_t elen = (size_t)(path + len - dot);
        for (int i = 0; MIME[i].ext; i++) {
            if (strlen(MIME[i].ext) == elen && strncasecmp(dot, MIME[i].ext, elen) == 0)
                return MIME[i].type;
        }
    }
    return "application/octet-stream";
}

/* ------------------------------------------------------------------ paths */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decode and normalise the URL path into out, as a path relative to
 * the root ("" for the root itself).  Returns 0, or 400 (bad escape, %00,
 * ".." above the root), 404 (a dotfile), 414 (too long).  An encoded slash
 * (%2F) becomes a plain one before normalising, as in nginx. */
static int decode_path(mg_str path, char *out, size_t cap, int serve_dotfiles)
{
    size_t n = 0;

    if (path.len == 0 || path.p[0] != '/')
        return 400;
    for (uint32_t i = 0; i < path.len; i++) {
        unsigned char c = (unsigned char)path.p[i];
        if (c == '%') {
            int hi, lo;
            if (path.len - i < 3 || (hi = hexval((unsigned char)path.p[i + 1])) < 0 ||
                (lo = hexval((unsigned char)path.p[i + 2])) < 0)
                return 400;
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0)
                return 400;
            i += 2;
        }
        if (n + 1 >= cap)
            return 414;
        out[n++] = (char)c;
    }

    /* Normalise in place: the write index w never passes the read index r. */
    size_t r = 0, w = 0;
    while (r < n) {
        while (r < n && out[r] == '/')
            r++;
        if (r == n)
            break;
        size_t s = r;
        while (r < n && out[r] != '/')
            r++;
        size_t len = r - s;
        if (len == 1 && out[s] == '.')
            continue;
        if (len == 2 && out[s] == '.' && out[s + 1] == '.') {
            if (w == 0)
                return 400;   /* above the root */
            while (w > 0 && out[w - 1] != '/')
                w--;
            if (w > 0)
                w--;
            continue;
        }
        if (out[s] == '.' && !serve_dotfiles &&
            !(len == 11 && memcmp(out + s, ".well-known", 11) == 0))
            return 404;   /* /.git, /.env, /.htpasswd ... */
        if (w > 0)
            out[w++] = '/';
        memmove(out + w, out + s, len);
        w += len;
    }
    out[w] = '\0';
    return 0;
}

/* Is the opened fd's real path inside the root?  (/proc/self/fd/N names it.) */
static int fd_inside_root(mg_server *srv, int fd)
{
    char link[32], real[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof(real) - 1);
    if (n < 0)
        return 0;
    real[n] = '\0';
    size_t rl = strlen(srv->root_real);
    return strncmp(real, srv->root_real, rl) == 0 && (real[rl] == '/' || real[rl] == '\0' ||
                                                       (rl == 1 && srv->root_real[0] == '/'));
}

static int open_beneath(mg_server *srv, int dirfd, const char *rel)
{
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    if (srv->cfg.follow_symlinks)
        return openat(dirfd, rel, flags);
    struct open_how how = {.flags = (uint64_t)flags,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
    if (fd >= 0 || (errno != EXDEV && errno != ENOSYS))
        return fd;
    /* RESOLVE_BENEATH refuses every absolute symlink, even one that points
     * back inside the root; so follow it, then check where it landed. */
    fd = openat(dirfd, rel, flags);
    if (fd < 0)
        return fd;
    if (fd_inside_root(srv, fd))
        return fd;
    close(fd);
    errno = EXDEV;
    return -1;
}

static int errno_status(int e)
{
    switch (e) {
    case EACCES:
    case EPERM:
        return 403;
    case EMFILE:
    case ENFILE:
    case ENOMEM:
        return 503;
    default:   /* ENOENT, ENOTDIR, ELOOP, EXDEV (left the root), ENAMETOOLONG */
        return 404;
    }
}

/* 301 to the same path with a slash, query kept (nginx does the same). */
static int redirect_slash(mg_coroutine *co, mg_request *req, int keep_alive, int head_only)
{
    char *start = out_area(co);
    outbuf o = {start, start + sizeof(co->rb->out)};
    static const char body[] = "<html><head><title>301 Moved Permanently</title></head>"
                               "<body><h1>301 Moved Permanently</h1></body></html>\n";

    if (req->path.len + req->query.len + 64 > sizeof(co->rb->out) - 256)
        return send_error(co, 414, keep_alive, head_only) < 0 ? -1 : 0;
    put_status(&o, co->worker, 301);
    put_str(&o, "Location: ");
    put_mem(&o, req->path.p, req->path.len);
    put_str(&o, "/");
    if (req->query.len) {
        put_str(&o, "?");
        put_mem(&o, req->query.p, req->query.len);
    }
    put_str(&o, "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: ");
    put_u64(&o, sizeof(body) - 1, 10);
    put_str(&o, "\r\n");
    put_connection(&o, keep_alive);
    if (!head_only)
        put_mem(&o, body, sizeof(body) - 1);
    co->worker->stats.requests++;
    return send_async(co, start, (size_t)(o.p - start)) < 0 ? -1 : 0;
}

static int send_file(mg_coroutine *co, mg_request *req, int fd, struct stat *st, const char *name,
                     size_t name_len, int keep_alive, int head_only)
{
    mg_worker *w = co->worker;
    char *start = out_area(co);
    outbuf o = {start, start + sizeof(co->rb->out)};
    char date[32];

    MG_UNUSED(req);
    put_status(&o, w, 200);
    put_str(&o, "Content-Type: ");
    put_str(&o, mime_type(name, name_len));
    put_str(&o, "\r\nContent-Length: ");
    put_u64(&o, (uint64_t)st->st_size, 10);
    put_str(&o, "\r\nLast-Modified: ");
    put_mem(&o, date, (size_t)http_date(date, st->st_mtime));
    put_str(&o, "\r\nETag: \"");
    put_u64(&o, (uint64_t)st->st_mtime, 16);
    put_str(&o, "-");
    put_u64(&o, (uint64_t)st->st_size, 16);
    put_str(&o, "\"\r\n");
    put_connection(&o, keep_alive);
    w->stats.requests++;

    size_t head_len = (size_t)(o.p - start);
    if (head_only || st->st_size == 0)
        return send_async(co, start, head_len) < 0 ? -1 : 0;

    /* TCP_CORK around header + body: one segment carries the head and the
     * first bytes of the file; uncorking flushes the tail. */
    set_cork(co->fd, 1);
    if (send_async(co, start, head_len) < 0)
        return -1;
    ssize_t n = sendfile_async(co, fd, 0, (size_t)st->st_size);
    set_cork(co->fd, 0);
    if (n != (ssize_t)st->st_size)
        return -1;   /* reset by the peer, or the file shrank: the length was promised */
    return 0;
}

int static_serve(mg_coroutine *co, mg_request *req, int keep_alive)
{
    mg_server *srv = co->worker->srv;
    int head_only = req->method_id == MG_M_HEAD;

    switch (req->method_id) {
    case MG_M_GET:
    case MG_M_HEAD:
        break;
    case MG_M_OPTIONS: {
        char *start = out_area(co);
        outbuf o = {start, start + sizeof(co->rb->out)};
        put_status(&o, co->worker, 204);
        put_str(&o, ALLOW_HDR);
        put_connection(&o, keep_alive);
        co->worker->stats.requests++;
        return send_async(co, start, (size_t)(o.p - start)) < 0 ? -1 : 0;
    }
    case MG_M_OTHER:
        return send_error(co, 501, keep_alive, 0) < 0 ? -1 : 0;
    default:
        return send_error(co, 405, keep_alive, 0) < 0 ? -1 : 0;
    }

    char *rel = co->rb->path;
    int st = decode_path(req->path, rel, sizeof(co->rb->path) - 16, srv->cfg.serve_dotfiles);
    if (st)
        return send_error(co, st, keep_alive, head_only) < 0 ? -1 : 0;

    int fd = open_beneath(srv, srv->root_fd, rel[0] ? rel : ".");
    if (fd < 0)
        return send_error(co, errno_status(errno), keep_alive, head_only) < 0 ? -1 : 0;
    co->file_fd = fd;   /* closed by coroutine_destroy() if we never get back */

    struct stat sb;
    int r;
    size_t rel_len = strlen(rel);
    if (fstat(fd, &sb) < 0) {
        r = send_error(co, 404, keep_alive, head_only) < 0 ? -1 : 0;
    } else if (S_ISDIR(sb.st_mode)) {
        if (req->path.p[req->path.len - 1] != '/') {
            r = redirect_slash(co, req, keep_alive, head_only);
        } else {
            int ifd = open_beneath(srv, fd, "index.html");
            close(fd);
            co->file_fd = ifd;
            if (ifd < 0) {
                /* a directory without index.html: never a listing */
                r = send_error(co, errno == ENOENT ? 403 : errno_status(errno), keep_alive,
                               head_only) < 0 ? -1 : 0;
            } else if (fstat(ifd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
                r = send_error(co, 403, keep_alive, head_only) < 0 ? -1 : 0;
            } else {
                r = send_file(co, req, ifd, &sb, "index.html", 10, keep_alive, head_only);
            }
        }
    } else if (!S_ISREG(sb.st_mode)) {
        r = send_error(co, 403, keep_alive, head_only) < 0 ? -1 : 0;   /* fifo, device, socket */
    } else {
        r = send_file(co, req, fd, &sb, rel, rel_len, keep_alive, head_only);
    }
    if (co->file_fd >= 0) {
        close(co->file_fd);
        co->file_fd = -1;
    }
    return r;
}
