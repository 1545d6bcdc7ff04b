/* front.c - what the server does in front of an app: the forwarded client, --header lines, error pages.
 *
 * Theory of operation.  Three settings of issue 14 ("run it in production")
 * that static.c and pycall.c read per request, kept here so that each of
 * them has one place:
 *
 *   --header NAME: VALUE   checked once at start (mg_static_fields: a
 *                          handler's fields_check, plus the fields the
 *                          static answers write themselves), copied into
 *                          srv->add_headers and read once as fields
 *                          (srv->added); static.c puts them on its 2xx
 *                          and 3xx answers (nginx's add_header list).
 *   --error-page CODE=PATH read once at start by Python, copied here with its
 *                          Content-Type; static.c send_error uses the body.
 *   --proxy-headers        request_client() runs once per request, right
 *                          after the head is parsed, and leaves THE CLIENT
 *                          (co->conn->client, client_port, client_https) that
 *                          handlers (pycall.c) and the access log read
 *                          through conn_client().
 *
 * The forwarded client (uvicorn's ProxyHeadersMiddleware rule, and RFC 7239):
 * only a peer in --forwarded-allow-ips is believed.  X-Forwarded-For is a list
 * each proxy appends to, so it is read from the right: the first address that
 * is not a trusted proxy is the client (a client can put anything on the left
 * of the list; it cannot make our own trusted proxy append a lie on the
 * right).  All trusted: the leftmost.  "*": the leftmost.  What is chosen
 * must be an IP address, else it is ignored and the peer stays (a garbage
 * value must never reach REMOTE_ADDR or the log as an address).
 * X-Forwarded-Proto: "http" or "https", else ignored.  Forwarded (RFC 7239
 * section 4) is read the same way, element by element: for= picks the
 * element, its proto= is the scheme.
 *
 * When both kinds are present, X-Forwarded-* win and Forwarded is not read:
 * nearly every proxy (nginx's proxy_add_x_forwarded_for, AWS/GCP load
 * balancers, Heroku, Caddy) writes X-Forwarded-For and passes a client's own
 * Forwarded field through untouched, so reading Forwarded first would let a
 * client choose its address; the headers uvicorn, gunicorn and werkzeug
 * ProxyFix read are the X-Forwarded ones too.  Behind a proxy that writes
 * only Forwarded, there is no X-Forwarded-For to win.
 * Tested by tests/test_front.py (test_proxy_*).
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cache.h"
#include "http.h"
#include "response.h"
#include "exchange.h"

/* ------------------------------------------------------------ --header */

/* The fields a static answer writes itself (static.c, cache.c file_describe),
 * beside those fields_check() keeps for the writer: a second copy would
 * contradict the first. */
static const char *const STATIC_OWNED[] = {
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "date",
    "server",
    "content-range",
    "content-type",
    "content-encoding",
    "etag",
    "last-modified",
    "accept-ranges",
    "location",
    "allow",
    NULL,
};

int mg_static_fields(const char *block, size_t block_len, int n, char *out, size_t out_cap, size_t *out_len,
                     const char **why)
{
    mg_fields_info info;
    mg_buf b;
    const char *p = block, *end = block + block_len;

    *out_len = 0;
    *why = NULL;
    for (int i = 0; i < n && p < end; i++) {
        const char *nend = memchr(p, '\0', (size_t)(end - p));
        if (!nend)
            break; /* malformed: fields_check says so */
        for (int k = 0; STATIC_OWNED[k]; k++) {
            if (eq_ci(p, (size_t)(nend - p), STATIC_OWNED[k])) {
                *why = "the server writes this header itself";
                return -EINVAL;
            }
        }
        const char *vend = nend + 1 < end ? memchr(nend + 1, '\0', (size_t)(end - nend - 1)) : NULL;
        if (!vend)
            break;
        p = vend + 1;
    }
    mg_buf checked;
    buf_growable(&checked);
    int r = fields_check(&checked, block, block_len, n, &info, why);
    if (r < 0 || checked.err) {
        buf_free(&checked);
        return r < 0 ? r : -ENOMEM;
    }
    buf_fixed(&b, out, out_cap < MG_ADD_HEADERS_MAX ? out_cap : MG_ADD_HEADERS_MAX);
    h1_field_text(&b, checked.p, checked.len, info.kept);
    buf_free(&checked);
    if (b.err) {
        *why = "the headers are longer than 1024 bytes";
        return -ENOSPC;
    }
    *out_len = b.len;
    return 0;
}

/* --header's lines as fields, views into srv->add_headers.  The text is
 * what mg_static_fields answered Python (checked there): one "Name: value"
 * line each, ending in LF (HTTP/1.1's CRLF: the CR is dropped). */
static int added_fields(mg_server *srv)
{
    const char *p = srv->add_headers, *end = p + srv->add_headers_len;
    int n = 0;
    for (const char *q = p; q < end; q++)
        n += *q == '\n';
    if (n == 0)
        return 0;
    if (!(srv->added = calloc((size_t)n, sizeof(mg_field))))
        return -ENOMEM;
    int i = 0;
    while (p < end && i < n) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        const char *line_end = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (!colon)
            return -EINVAL;
        const char *v = colon + 1;
        while (v < line_end && (*v == ' ' || *v == '\t'))
            v++;
        srv->added[i++] = (mg_field){p, v, (uint32_t)(colon - p), (uint32_t)(line_end - v)};
        p = nl + 1;
    }
    srv->nadded = i;
    return 0;
}

/* ------------------------------------------------------- start and end */

int front_init(mg_server *srv)
{
    const mg_config *cfg = &srv->cfg;

    if (cfg->add_headers && cfg->add_headers[0]) {
        srv->add_headers_len = strlen(cfg->add_headers);
        if (srv->add_headers_len > MG_ADD_HEADERS_MAX)
            return -EINVAL;
        if (!(srv->add_headers = strdup(cfg->add_headers)))
            return -ENOMEM;
        int r = added_fields(srv);
        if (r < 0)
            return r;
    }
    srv->cfg.add_headers = srv->add_headers;
    for (int i = 0; i < cfg->error_pages_n; i++) {
        const mg_error_page *pg = &cfg->error_pages[i];
        if (pg->status < 400 || pg->status > 599 || pg->body_len > MG_ERROR_PAGE_MAX || !pg->path)
            return -EINVAL;
        struct mg_err_page *e = srv->error_page[pg->status - 400];
        if (!e && !(e = srv->error_page[pg->status - 400] = calloc(1, sizeof(*e))))
            return -ENOMEM;
        free(e->body);
        if (!(e->body = malloc(pg->body_len ? pg->body_len : 1)))
            return -ENOMEM;
        memcpy(e->body, pg->body, pg->body_len);
        e->body_len = pg->body_len;
        e->ctype = mime_type(pg->path);
    }
    srv->cfg.error_pages = NULL; /* copied into srv->error_page; error_pages_n still counts them */
    if (cfg->forwarded_allow_n > 0) {
        srv->trusted = calloc((size_t)cfg->forwarded_allow_n, sizeof(mg_cidr));
        if (!srv->trusted)
            return -ENOMEM;
        memcpy(srv->trusted, cfg->forwarded_allow, (size_t)cfg->forwarded_allow_n * sizeof(mg_cidr));
        srv->trusted_n = cfg->forwarded_allow_n;
    }
    srv->cfg.forwarded_allow = srv->trusted;
    return 0;
}

void front_free(mg_server *srv)
{
    free(srv->add_headers);
    srv->add_headers = NULL;
    free(srv->added);
    srv->added = NULL;
    srv->nadded = 0;
    for (int i = 0; i < 200; i++) {
        if (srv->error_page[i]) {
            free(srv->error_page[i]->body);
            free(srv->error_page[i]);
            srv->error_page[i] = NULL;
        }
    }
    free(srv->trusted);
    srv->trusted = NULL;
}

/* ----------------------------------------------------------- addresses */

const char *conn_client(mg_coroutine *co, int *port, int *https)
{
    if (!co->conn->client_known) {
        conn_addresses(co);
        memcpy(co->conn->client, co->conn->peer, sizeof(co->conn->client));
        co->conn->client_port = co->conn->peer_port;
        co->conn->client_https = 0;
        co->conn->client_known = 1;
    }
    *port = co->conn->client_port;
    *https = co->conn->client_https;
    return co->conn->client;
}

/* s[0..n) as an IP address: 4 or 6 (the bytes in addr), 0 if it is not one. */
static int parse_ip(const char *s, size_t n, unsigned char addr[16])
{
    char tmp[64];
    if (n == 0 || n >= sizeof(tmp))
        return 0;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (inet_pton(AF_INET, tmp, addr) == 1)
        return 4;
    if (inet_pton(AF_INET6, tmp, addr) == 1)
        return 6;
    return 0;
}

static int prefix_match(const unsigned char *a, const unsigned char *net, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, net, (size_t)whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (net[whole] & mask);
}

/* Is the address text s[0..n) one of --forwarded-allow-ips?  An IPv4-mapped
 * IPv6 address (a dual-stack listener's view of an IPv4 peer) is its IPv4. */
static int trusted(const mg_server *srv, const char *s, size_t n)
{
    unsigned char a[16];
    int fam = parse_ip(s, n, a);
    if (fam == 6 && memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
        memmove(a, a + 12, 4);
        fam = 4;
    }
    if (!fam)
        return 0;
    for (int i = 0; i < srv->trusted_n; i++)
        if (srv->trusted[i].family == fam && prefix_match(a, srv->trusted[i].addr, srv->trusted[i].prefix))
            return 1;
    return 0;
}

/* ------------------------------------------------------- proxy headers */

#define FWD_MAX 64 /* list entries kept (the rightmost): longer chains are all proxies of ours */

typedef struct {
    const char *p; /* for=, or an X-Forwarded-For entry */
    size_t n;
    const char *proto; /* Forwarded's proto= of the same element (NULL: none) */
    size_t proto_n;
} fwd_entry;

typedef struct {
    fwd_entry e[FWD_MAX];
    unsigned total; /* entries seen; the last min(total, FWD_MAX) are kept */
} fwd_list;

static void fwd_add(fwd_list *l, const char *p, size_t n, const char *proto, size_t proto_n)
{
    fwd_entry *e = &l->e[l->total++ % FWD_MAX];
    while (n && (*p == ' ' || *p == '\t'))
        p++, n--;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    *e = (fwd_entry){p, n, proto, proto_n};
}

static const fwd_entry *fwd_at(const fwd_list *l, unsigned i) /* 0: the leftmost kept */
{
    unsigned kept = l->total < FWD_MAX ? l->total : FWD_MAX;
    return &l->e[(l->total - kept + i) % FWD_MAX];
}

/* uvicorn's rule: the rightmost entry that is not a trusted proxy; all
 * trusted (or "*"), the leftmost.  NULL for an empty list. */
static const fwd_entry *fwd_choose(const mg_server *srv, const fwd_list *l)
{
    unsigned kept = l->total < FWD_MAX ? l->total : FWD_MAX;
    if (kept == 0)
        return NULL;
    if (!srv->cfg.forwarded_allow_all) {
        for (unsigned i = kept; i-- > 0;) {
            const fwd_entry *e = fwd_at(l, i);
            if (!trusted(srv, e->p, e->n))
                return e;
        }
    }
    return fwd_at(l, 0);
}

/* A Forwarded for= node (RFC 7239 section 6): "[v6]" or "[v6]:port", "v4" or
 * "v4:port"; the address part, or n = 0 for "unknown", "_hidden" and junk. */
static void node_address(const char **p, size_t *n)
{
    const char *s = *p;
    size_t len = *n;
    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || (close + 1 < s + len && close[1] != ':')) {
            *n = 0;
            return;
        }
        *p = s + 1;
        *n = (size_t)(close - s - 1);
        return;
    }
    const char *colon = memchr(s, ':', len);
    if (colon)
        *n = (size_t)(colon - s); /* v4:port (a bare v6 is not a valid node: junk) */
}

/* One Forwarded value (RFC 7239 section 4): elements split at commas, pairs
 * at semicolons, values tokens or quoted-strings (a comma inside quotes is
 * not a separator). */
static void forwarded_parse(fwd_list *l, const char *v, size_t n)
{
    size_t i = 0;
    while (i <= n) {
        const char *fp = NULL, *pp = NULL;
        size_t fn = 0, pn = 0;
        int any = 0;
        for (;;) { /* the pairs of one element */
            while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ';'))
                i++;
            size_t ks = i;
            while (i < n && v[i] != '=' && v[i] != ';' && v[i] != ',')
                i++;
            size_t klen = i - ks;
            const char *val = NULL;
            size_t vlen = 0;
            if (i < n && v[i] == '=') {
                i++;
                if (i < n && v[i] == '"') {
                    size_t s = ++i;
                    while (i < n && v[i] != '"')
                        i += v[i] == '\\' && i + 1 < n ? 2 : 1;
                    val = v + s, vlen = (i < n ? i : n) - s;
                    if (i < n)
                        i++;
                } else {
                    size_t s = i;
                    while (i < n && v[i] != ';' && v[i] != ',')
                        i++;
                    val = v + s, vlen = i - s;
                }
            }
            while (klen && (v[ks + klen - 1] == ' ' || v[ks + klen - 1] == '\t'))
                klen--;
            if (val && eq_ci(v + ks, klen, "for"))
                fp = val, fn = vlen, any = 1;
            else if (val && eq_ci(v + ks, klen, "proto"))
                pp = val, pn = vlen, any = 1;
            else if (klen)
                any = 1;
            while (i < n && v[i] != ';' && v[i] != ',')
                i++; /* junk after a quoted value */
            if (i >= n || v[i] == ',')
                break;
        }
        if (any) {
            if (fp)
                node_address(&fp, &fn);
            fwd_add(l, fp ? fp : "", fp ? fn : 0, pp, pn);
        }
        i++; /* past the comma (or the end) */
    }
}

static int is_scheme(const char *p, size_t n, int *https)
{
    while (n && (*p == ' ' || *p == '\t'))
        p++, n--;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (eq_ci(p, n, "https"))
        return *https = 1, 1;
    if (eq_ci(p, n, "http"))
        return *https = 0, 1;
    return 0;
}

/* Take the chosen address, if it is one: its canonical text, port 0. */
static void set_client(mg_coroutine *co, const char *p, size_t n)
{
    unsigned char a[16];
    int fam = parse_ip(p, n, a);
    if (!fam)
        return; /* garbage: the peer stays */
    if (inet_ntop(fam == 4 ? AF_INET : AF_INET6, a, co->conn->client, sizeof(co->conn->client)))
        co->conn->client_port = 0;
    else
        memcpy(co->conn->client, co->conn->peer, sizeof(co->conn->client));
}

void request_client(mg_coroutine *co, const mg_request *req)
{
    mg_server *srv = co->worker->srv;
    int port, https;

    co->conn->client_known = 0;
    (void)conn_client(co, &port, &https); /* the peer, to start with */
    if (!srv->cfg.forwarded_allow_all && !trusted(srv, co->conn->peer, strlen(co->conn->peer)))
        return; /* an untrusted peer's headers change nothing */

    fwd_list xff, fwd;
    const mg_str *xfp = NULL;
    int have_x = 0;
    xff.total = fwd.total = 0;
    for (int i = 0; i < req->num_headers; i++) {
        const mg_header *h = &req->headers[i];
        if (eq_ci(h->name.p, h->name.len, "x-forwarded-for")) {
            have_x = 1;
            const char *v = h->value.p, *end = v + h->value.len;
            for (;;) {
                const char *comma = memchr(v, ',', (size_t)(end - v));
                fwd_add(&xff, v, (size_t)((comma ? comma : end) - v), NULL, 0);
                if (!comma)
                    break;
                v = comma + 1;
            }
        } else if (eq_ci(h->name.p, h->name.len, "x-forwarded-proto")) {
            have_x = 1;
            xfp = &h->value; /* the last one */
        } else if (eq_ci(h->name.p, h->name.len, "forwarded")) {
            forwarded_parse(&fwd, h->value.p, h->value.len);
        }
    }
    if (have_x) {
        const fwd_entry *e = fwd_choose(srv, &xff);
        if (e)
            set_client(co, e->p, e->n);
        if (xfp && is_scheme(xfp->p, xfp->len, &https))
            co->conn->client_https = https;
        return;
    }
    const fwd_entry *e = fwd_choose(srv, &fwd);
    if (!e)
        return;
    set_client(co, e->p, e->n);
    if (e->proto && is_scheme(e->proto, e->proto_n, &https))
        co->conn->client_https = https;
}
