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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "http.h"
#include "cache.h"
#include "response.h"
#include "exchange.h"

static const mg_field ALLOW = MG_FIELD_LIT("Allow", "GET, HEAD, OPTIONS");
static const mg_field CTYPE_HTML = MG_FIELD_LIT("Content-Type", "text/html; charset=utf-8");

/* ------------------------------------------------------ a response head */

/* Every answer here goes through the request's exchange (exchange.h): a
 * status and fields, then the body; the protocol module writes them. */

/* --header fields, on the statuses nginx's add_header puts them on (its
 * list: 200, 201, 204, 206, 301, 302, 303, 304, 307, 308), never on errors. */
static void put_added(mg_head *h, const mg_server *srv)
{
    if (MG_LIKELY(!srv->nadded))
        return;
    switch (h->status) {
    case 200:
    case 201:
    case 204:
    case 206:
    case 301:
    case 302:
    case 303:
    case 304:
    case 307:
    case 308:
        h->added = srv->added;
        h->nadded = srv->nadded;
        break;
    default: break;
    }
}

/* An error page, with up to two fields of the server's own (Content-Range):
 * the --error-page file for the status if there is one (front.c), else a
 * small built-in HTML page. */
int send_error_fields(mg_exchange *x, int status, const mg_field *extra, int nextra)
{
    mg_field f[4];
    int n = 0;
    char body_mem[160];
    mg_buf b;
    const char *body;
    size_t body_len;

    if (status == 405)
        f[n++] = ALLOW;
    for (int i = 0; i < nextra && i < 2; i++)
        f[n++] = extra[i];
    const struct mg_err_page *page =
        status >= 400 && status <= 599 ? x->w->srv->error_page[status - 400] : NULL;
    if (MG_UNLIKELY(page != NULL)) {
        f[n++] = (mg_field){"Content-Type", page->ctype, 12, (uint32_t)strlen(page->ctype)};
        body = page->body;
        body_len = page->body_len;
    } else {
        buf_fixed(&b, body_mem, sizeof(body_mem));
        buf_str(&b, "<html><head><title>");
        buf_u64(&b, (uint64_t)status, 10);
        buf_str(&b, " ");
        buf_str(&b, http_reason(status));
        buf_str(&b, "</title></head><body><h1>");
        buf_u64(&b, (uint64_t)status, 10);
        buf_str(&b, " ");
        buf_str(&b, http_reason(status));
        buf_str(&b, "</h1></body></html>\n");
        f[n++] = CTYPE_HTML;
        body = b.p;
        body_len = b.len;
    }
    mg_head h = {.status = status, .fields = f, .nfields = n, .length = (int64_t)body_len};
    if (exchange_respond(x, &h) < 0)
        return MG_MW_BROKEN;
    return exchange_body(x, body, body_len, 1);
}

int send_error(mg_exchange *x, int status)
{
    return send_error_fields(x, status, NULL, 0);
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
 * (%2F) becomes a plain one before normalising, as in nginx.  *dir says the
 * decoded path names a directory: it ends in "/", "/." or "/.." ("/sub/..%2F"
 * and "/sub/.." are the root, asked for as a directory). */
static int decode_path(mg_str path, char *out, size_t cap, int serve_dotfiles, int *dir)
{
    size_t n = 0;

    if (path.len == 0 || path.p[0] != '/')
        return 400;
    /* The common path ("/index.html", "/css/site.css") has no escape, no
     * dot segment or dotfile ("/."), no empty segment ("//"): the result is
     * then the path without its leading (and trailing) slash, as the loops
     * below would make it, for a tenth of their instructions. */
    size_t k = 0;
    for (; k < path.len; k++) {
        char c = path.p[k];
        if (c == '%' || (c == '/' && k + 1 < path.len && (path.p[k + 1] == '/' || path.p[k + 1] == '.')))
            break;
    }
    if (k == path.len) {
        if (path.len >= cap)
            return 414;
        size_t len = path.len - 1;
        *dir = path.p[path.len - 1] == '/';
        if (*dir && len > 0)
            len--;
        memcpy(out, path.p + 1, len);
        out[len] = '\0';
        return 0;
    }
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

    size_t last = n;
    while (last > 0 && out[last - 1] != '/')
        last--;
    *dir = n - last == 0 || (n - last == 1 && out[last] == '.') ||
        (n - last == 2 && out[last] == '.' && out[last + 1] == '.');

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
                return 400; /* above the root */
            while (w > 0 && out[w - 1] != '/')
                w--;
            if (w > 0)
                w--;
            continue;
        }
        if (out[s] == '.' && !serve_dotfiles && !(len == 11 && memcmp(out + s, ".well-known", 11) == 0))
            return 404; /* /.git, /.env, /.htpasswd ... */
        if (w > 0)
            out[w++] = '/';
        memmove(out + w, out + s, len);
        w += len;
    }
    out[w] = '\0';
    return 0;
}

/* ------------------------------------------------ the last path, remembered */

/* A keep-alive client (a benchmark above all) asks for one path again and
 * again.  decode_path and file_open's strlen, FNV hash, bucket walk and key
 * memcmp were a sixth of such a request's instructions (bench/per_request.py),
 * so each worker remembers the raw bytes of the last path that resolved to an
 * entry of its open-file cache, and a request with the same bytes takes that
 * entry straight, through file_hold(): the freshness check of a lookup, so
 * nothing older than the cache already allows is served.  The answer is the
 * lookup's: decode_path depends only on the bytes and --serve-dotfiles, the
 * cache holds one entry per key, and an entry that leaves the cache clears
 * the memo (cache.c entry_remove).  A request's scratch entry (cache off or
 * full) is never remembered. */
static mg_centry *target_memo_get(mg_worker *w, const mg_request *req)
{
    if (!w->memo_entry || req->path.len != w->memo_len || memcmp(req->path.p, w->memo_path, w->memo_len) != 0)
        return NULL;
    return file_hold(w, w->memo_entry); /* NULL if stale: then the whole lookup, which misses */
}

static void target_memo_put(mg_worker *w, const mg_request *req, mg_centry *e)
{
    if (e->scratch || req->path.len > sizeof(w->memo_path))
        return;
    memcpy(w->memo_path, req->path.p, req->path.len);
    w->memo_len = req->path.len;
    w->memo_entry = e;
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
    return strncmp(real, srv->root_real, rl) == 0 &&
        (real[rl] == '/' || real[rl] == '\0' || (rl == 1 && srv->root_real[0] == '/'));
}

int open_beneath(mg_server *srv, int dirfd, const char *rel)
{
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    if (srv->cfg.follow_symlinks)
        return openat(dirfd, rel, flags);
    struct open_how how = {.flags = (uint64_t)flags, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
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


/* ------------------------------------------------- conditional requests */

static mg_str header_value(const mg_request *req, int id)
{
    int i = req->hdr[id];
    return i >= 0 ? req->headers[i].value : (mg_str){NULL, 0};
}

/* RFC 9110 section 13.2.2, in its order.  Returns 0 to go on, 304 or 412. */
static int evaluate_preconditions(const mg_request *req, const mg_centry *e, const mg_file *rep)
{
    int get_or_head = req->method_id == MG_M_GET || req->method_id == MG_M_HEAD;
    mg_str v;

    if ((v = header_value(req, MG_H_IF_MATCH)).p) {
        if (!etag_list_matches(v, rep->etag, (size_t)rep->etag_len, 0))
            return 412;
    } else if ((v = header_value(req, MG_H_IF_UNMODIFIED_SINCE)).p) {
        time_t t = http_parse_date(v.p, v.len);
        if (t >= 0 && e->mtime_sec > t)
            return 412;
    }
    if ((v = header_value(req, MG_H_IF_NONE_MATCH)).p) {
        if (etag_list_matches(v, rep->etag, (size_t)rep->etag_len, 1))
            return get_or_head ? 304 : 412;
    } else if (get_or_head && (v = header_value(req, MG_H_IF_MODIFIED_SINCE)).p) {
        time_t t = http_parse_date(v.p, v.len);
        if (t >= 0 && e->mtime_sec <= t)
            return 304;
    }
    return 0;
}

/* If-Range: the Range applies only if the validator still matches (a strong
 * ETag, or exactly the Last-Modified date). */
static int if_range_holds(const mg_request *req, const mg_centry *e, const mg_file *rep)
{
    mg_str v = header_value(req, MG_H_IF_RANGE);
    if (!v.p)
        return 1;
    if (v.len >= 2 && (v.p[0] == '"' || (v.p[0] == 'W' && v.p[1] == '/')))
        return etag_list_matches(v, rep->etag, (size_t)rep->etag_len, 0);
    time_t t = http_parse_date(v.p, v.len);
    return t >= 0 && t == e->mtime_sec;
}

/* ------------------------------------------------------------- answering */

static int send_not_modified(mg_exchange *x, const mg_centry *e, const mg_file *rep)
{
    mg_field f[3] = {
        {"ETag", rep->etag, 4, (uint32_t)rep->etag_len},
        {"Last-Modified", e->last_modified, 13, (uint32_t)strlen(e->last_modified)},
        MG_FIELD_LIT("Vary", "Accept-Encoding"),
    };
    mg_head h = {.status = 304,
                 .fields = f,
                 .nfields = x->w->srv->cfg.gzip_static && e->compressible ? 3 : 2,
                 .length = -1};
    put_added(&h, x->w->srv);
    if (exchange_respond(x, &h) < 0)
        return MG_MW_BROKEN;
    return exchange_end(x);
}

/* 200 or 206 for [start, start + len) of rep.  keep: rep belongs to a cached
 * entry, whose 200 keep-alive head the protocol module may keep in rep->memo
 * (h1.c exchange_respond_memo: built once, its Date rewritten once a second;
 * a small file's sits right before its bytes, so the response is one send()
 * of one buffer, as the bare loop's, bench/bare_loop.c). */
static int send_representation(mg_exchange *x, mg_file *rep, int status, int64_t start, int64_t len, int keep)
{
    mg_head h = {.status = status, .fields = rep->fields, .nfields = rep->nfields, .length = len};
    mg_field f[MG_FILE_FIELDS + 1];
    char range[80];

    if (status == 206) {
        mg_buf o;
        buf_fixed(&o, range, sizeof(range));
        buf_str(&o, "bytes ");
        buf_u64(&o, (uint64_t)start, 10);
        buf_str(&o, "-");
        buf_u64(&o, (uint64_t)(start + len - 1), 10);
        buf_str(&o, "/");
        buf_u64(&o, (uint64_t)rep->size, 10);
        memcpy(f, rep->fields, (size_t)rep->nfields * sizeof(f[0]));
        f[h.nfields++] = (mg_field){"Content-Range", range, 13, (uint32_t)o.len};
        h.fields = f;
    }
    put_added(&h, x->w->srv);
    if (exchange_respond_memo(x, &h, keep ? &rep->memo : NULL, rep->data) < 0)
        return MG_MW_BROKEN;
    if (len == 0)
        return exchange_end(x);
    if (rep->data) /* a small file from memory: head and body in one sendmsg() */
        return exchange_body(x, rep->data + start, (size_t)len, 1);
    return exchange_file(x, rep->fd, (off_t)start, (size_t)len);
}

static int serve_entry(mg_exchange *x, mg_request *req, mg_centry *e)
{
    mg_file *rep = &e->plain;
    mg_str ae = header_value(req, MG_H_ACCEPT_ENCODING);

    if (e->gz.fd >= 0 && ae.p && accepts_gzip(ae))
        rep = &e->gz;
    int pre = evaluate_preconditions(req, e, rep);
    if (pre == 304)
        return send_not_modified(x, e, rep);
    if (pre)
        return send_error(x, pre);

    /* Range is defined for GET only (RFC 9110 section 14.2) */
    mg_str range = header_value(req, MG_H_RANGE);
    if (range.p && req->method_id == MG_M_GET && if_range_holds(req, e, rep)) {
        int64_t start = 0, len = 0;
        int r = parse_range(range, rep->size, &start, &len);
        if (r == 1)
            return send_representation(x, rep, 206, start, len, 0);
        if (r == 416) {
            char cr[40];
            mg_buf o;
            buf_fixed(&o, cr, sizeof(cr));
            buf_str(&o, "bytes */");
            buf_u64(&o, (uint64_t)rep->size, 10);
            mg_field f = {"Content-Range", cr, 13, (uint32_t)o.len};
            return send_error_fields(x, 416, &f, 1);
        }
    }
    return send_representation(x, rep, 200, 0, rep->size, !e->scratch);
}

/* May byte c stand as itself in the Location we build?  A path segment's
 * pchar (RFC 3986 section 3.3: unreserved, sub-delims, ":" and "@") plus
 * "/"; in the query also "?" and "%" (the client's own escapes, kept). */
static int uri_keeps(unsigned char c, int query)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    if (c && strchr("-._~!$&'()*+,;=:@/", c))
        return 1;
    return query && (c == '?' || c == '%');
}

/* Percent-encode s[0..n) into o (when o is not NULL); returns the length. */
static size_t uri_encode(mg_buf *o, const char *s, size_t n, int query)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (uri_keeps(c, query)) {
            if (o)
                buf_put(o, &c, 1);
            len++;
        } else {
            char esc[3] = {'%', "0123456789ABCDEF"[c >> 4], "0123456789ABCDEF"[c & 15]};
            if (o)
                buf_put(o, esc, 3);
            len += 3;
        }
    }
    return len;
}

/* 301 to the same directory with a slash, query kept (as nginx does).
 * Location is built from rel, the decoded and normalised path static_serve
 * has just looked up (co->xs->path: no empty, "." or ".." segments, no
 * leading slash), re-encoded; never from the raw target, which made
 * "GET //evil.example/../docs" answer "Location: //evil.example/../docs/",
 * a link to another host (a network-path reference, RFC 3986 section 4.2).
 * "/" + rel cannot start with "//" or "/\" (a backslash is encoded).
 * Tested by tests/test_request_safety.py test_slash_redirect_stays_on_this_host. */
static int redirect_slash(mg_exchange *x, mg_request *req)
{
    static const char body[] = "<html><head><title>301 Moved Permanently</title></head>"
                               "<body><h1>301 Moved Permanently</h1></body></html>\n";
    mg_xstate *xs = x->co->xs;
    const char *rel = xs->path;
    size_t rel_len = strlen(rel);

    if (uri_encode(NULL, rel, rel_len, 0) + uri_encode(NULL, req->query.p, req->query.len, 1) + 64 >
        sizeof(xs->out) - 256 - x->w->srv->add_headers_len)
        return send_error(x, 414);
    /* the Location is written into the scratch path, free here: the
     * directory's entry (if any) was given back; the check above keeps it
     * far below that buffer's size, and the head within the out area */
    mg_buf o;
    buf_fixed(&o, xs->scratch_path, sizeof(xs->scratch_path));
    buf_str(&o, "/");
    uri_encode(&o, rel, rel_len, 0);
    buf_str(&o, "/");
    if (req->query.len) {
        buf_str(&o, "?");
        uri_encode(&o, req->query.p, req->query.len, 1);
    }
    mg_field f[2] = {{"Location", o.p, 8, (uint32_t)o.len}, CTYPE_HTML};
    mg_head h = {.status = 301, .fields = f, .nfields = 2, .length = sizeof(body) - 1};
    put_added(&h, x->w->srv);
    if (exchange_respond(x, &h) < 0)
        return MG_MW_BROKEN;
    return exchange_body(x, body, sizeof(body) - 1, 1);
}

/* The methods a static file answers: GET and HEAD go on (MG_MW_PASS),
 * OPTIONS gets its Allow, the rest 405 (or 501 for one we do not know). */
static int static_method(mg_exchange *x, mg_request *req)
{
    switch (req->method_id) {
    case MG_M_GET:
    case MG_M_HEAD: break;
    case MG_M_OPTIONS: {
        /* RFC 9110 9.3.7: a server MUST send Content-Length: 0 when the
         * answer has no content, and 8.6 forbids Content-Length on a 204. */
        mg_head h = {.status = 200, .fields = &ALLOW, .nfields = 1, .length = 0};
        put_added(&h, x->w->srv);
        if (exchange_respond(x, &h) < 0)
            return MG_MW_BROKEN;
        return exchange_end(x);
    }
    case MG_M_OTHER: return send_error(x, 501);
    default: return send_error(x, 405);
    }
    return MG_MW_PASS;
}

int static_serve(mg_exchange *x, mg_request *req)
{
    mg_coroutine *co = x->co;
    mg_server *srv = co->worker->srv;
    TRACE(co->worker, MG_EV_STATIC_SERVE, co, co->conn->fd, 0);
    int r = static_method(x, req);
    if (r != MG_MW_PASS)
        return r;

    mg_centry *e = target_memo_get(co->worker, req);
    if (!e) {
        char *rel = co->xs->path;
        int dir_request;
        int st =
            decode_path(req->path, rel, sizeof(co->xs->path) - 16, srv->cfg.serve_dotfiles, &dir_request);
        if (st)
            return send_error(x, st);
        e = file_open(co, rel, dir_request, &st);
        if (!e) {
            if (st == 301)
                return redirect_slash(x, req);
            return send_error(x, st);
        }
        target_memo_put(co->worker, req, e);
    }
    co->centry = e; /* released by coroutine_destroy() if we never get back */
    r = serve_entry(x, req, e);
    co->centry = NULL;
    file_release(co->worker, e);
    return r;
}

/* try_files $uri $uri/ @app.  The file is looked up first, whatever the
 * method, with static_serve's rules (decode_path: traversal and dotfiles;
 * file_open: RESOLVE_BENEATH, the open-file cache); then the method is
 * static_serve's business: a POST to a file is 405 with Allow, as nginx's
 * static module answers it (the file names a resource we serve, and it
 * allows GET and HEAD).  A path that cannot name anything (a bad escape,
 * %00, ".." above the root) is 400 here, as nginx answers it before any
 * location (tests/test_nginx_differential.py).  A dotfile, a missing file,
 * a path too long to be a file name (decode_path's 414: nginx's try_files
 * fails its stat with ENAMETOOLONG and passes the request on, so an app
 * route with a long path works with --root as without it), and a directory
 * without index.html are not files: they go to the handler.  (A
 * directory without an index would be 403 from the static files, which
 * nginx's try_files gives too; an app with a route there, "/api/" beside a
 * folder "api" of assets, is the more useful answer, and no listing is ever
 * shown either way.)  Tested by tests/test_front.py. */
int static_try(mg_exchange *x, mg_request *req)
{
    mg_coroutine *co = x->co;
    mg_server *srv = co->worker->srv;
    char *rel = co->xs->path;
    int dir_request, st;

    mg_centry *e = target_memo_get(co->worker, req);
    if (!e) {
        st = decode_path(req->path, rel, sizeof(co->xs->path) - 16, srv->cfg.serve_dotfiles, &dir_request);
        if (st == 400) /* a bad escape, %00, ".." above the root: as nginx, for every location */
            return send_error(x, st);
        if (st)
            return MG_MW_PASS; /* a dotfile, or a path too long to be a file name (414): not one of ours */
        e = file_open(co, rel, dir_request, &st);
        if (!e) {
            if (st != 301)
                return MG_MW_PASS;
            /* a directory asked without its slash: a file only if it has an index */
            e = file_open(co, rel, 1, &st);
            if (!e)
                return MG_MW_PASS;
            TRACE(co->worker, MG_EV_STATIC_SERVE, co, co->conn->fd, 0);
            file_release(co->worker, e);
            int r = static_method(x, req);
            return r != MG_MW_PASS ? r : redirect_slash(x, req);
        }
        target_memo_put(co->worker, req, e);
    }
    co->centry = e; /* released by coroutine_destroy() if we never get back */
    TRACE(co->worker, MG_EV_STATIC_SERVE, co, co->conn->fd, 0);
    int r = static_method(x, req);
    if (r == MG_MW_PASS)
        r = serve_entry(x, req, e);
    co->centry = NULL;
    file_release(co->worker, e);
    return r;
}
