/* cache.c - the open-file cache: fds, sizes, validators and prebuilt headers per path, per worker.
 *
 * "The best I/O is no I/O."  Without a cache every request costs openat2,
 * fstat and close, plus an openat for FILE.gz.  With it, a hit costs a hash
 * lookup; the entry keeps the open fd, the stat results, the ETag and
 * Last-Modified strings, the prebuilt header block, and for small files
 * (--small-file-cache, 16 KiB by default) the bytes themselves, so the whole
 * response leaves in one sendmsg().
 *
 * Freshness: an entry is compared with the file system (fstatat on its path
 * and on path.gz) when it is used and was last checked a second or more ago.
 * A changed device, inode, size or mtime drops it; so edits show within
 * about a second, and a deleted file is 404 from then on.
 *
 * Each worker has its own cache: no locks.  Entries in use by a coroutine
 * (a sendfile in progress) are reference-counted and freed only when the
 * last user lets go, even if invalidated meanwhile.  Eviction is LRU.
 */
#include "cache.h"
#include "response.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"

struct mg_file_cache {
    mg_centry **buckets;
    uint32_t mask; /* buckets - 1, a power of two minus one */
    int count, max;
    mg_centry *lru_head, *lru_tail; /* head: most recently used */
};

/* FNV-1a: simple and good enough for path names.  It continues from h
 * (FNV_OFFSET to start), so a key can be hashed in pieces. */
#define FNV_OFFSET 2166136261u
static uint32_t hash_path(uint32_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

int file_cache_init(mg_worker *w, int entries)
{
    if (entries <= 0)
        return 0;
    struct mg_file_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    uint32_t nb = 16;
    while (nb < (uint32_t)entries * 2)
        nb <<= 1;
    c->buckets = calloc(nb, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return -ENOMEM;
    }
    c->mask = nb - 1;
    c->max = entries;
    w->cache = c;
    return 0;
}

static void file_close(mg_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    exchange_memo_free(&f->memo);
    if (f->data)
        free(f->data - MG_HEAD_ROOM);
    f->data = NULL;
}

static void entry_free(mg_centry *e)
{
    file_close(&e->plain);
    file_close(&e->gz);
    if (!e->scratch) {
        free(e->key); /* key and path share one allocation */
        free(e);
    }
}

static void lru_unlink(struct mg_file_cache *c, mg_centry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct mg_file_cache *c, mg_centry *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

/* Take e out of the cache; free it now or when its last user lets go. */
static void entry_remove(mg_worker *w, mg_centry *e)
{
    struct mg_file_cache *c = w->cache;
    mg_centry **pp = &c->buckets[e->hash & c->mask];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    lru_unlink(c, e);
    c->count--;
    w->stats.cache_entries = (uint64_t)c->count;
    if (w->memo_entry == e)
        w->memo_entry = NULL; /* static.c's memo of the last path must not name it */
    e->dead = 1;
    if (e->refs == 0)
        entry_free(e);
}

void file_release(mg_worker *w, mg_centry *e)
{
    MG_UNUSED(w);
    if (--e->refs > 0)
        return;
    if (e->scratch || e->dead)
        entry_free(e);
}

void file_cache_free(mg_worker *w)
{
    struct mg_file_cache *c = w->cache;
    if (!c)
        return;
    while (c->lru_head)
        entry_remove(w, c->lru_head);
    free(c->buckets);
    free(c);
    w->cache = NULL;
}

/* ------------------------------------------------------------- filling */

static const struct {
    const char *ext;
    const char *type;
    int compressible;
} MIME[] = {
    {"html", "text/html; charset=utf-8", 1},
    {"htm", "text/html; charset=utf-8", 1},
    {"css", "text/css; charset=utf-8", 1},
    {"js", "text/javascript; charset=utf-8", 1},
    {"mjs", "text/javascript; charset=utf-8", 1},
    {"json", "application/json", 1},
    {"map", "application/json", 1},
    {"txt", "text/plain; charset=utf-8", 1},
    {"md", "text/markdown; charset=utf-8", 1},
    {"csv", "text/csv; charset=utf-8", 1},
    {"xml", "application/xml", 1},
    {"svg", "image/svg+xml", 1},
    {"wasm", "application/wasm", 1},
    {"ico", "image/x-icon", 1},
    {"png", "image/png", 0},
    {"jpg", "image/jpeg", 0},
    {"jpeg", "image/jpeg", 0},
    {"gif", "image/gif", 0},
    {"webp", "image/webp", 0},
    {"avif", "image/avif", 0},
    {"bmp", "image/bmp", 0},
    {"woff", "font/woff", 0},
    {"woff2", "font/woff2", 0},
    {"ttf", "font/ttf", 1},
    {"otf", "font/otf", 1},
    {"pdf", "application/pdf", 0},
    {"zip", "application/zip", 0},
    {"gz", "application/gzip", 0},
    {"tar", "application/x-tar", 0},
    {"mp4", "video/mp4", 0},
    {"webm", "video/webm", 0},
    {"mp3", "audio/mpeg", 0},
    {"ogg", "audio/ogg", 0},
    {"wav", "audio/wav", 0},
    {NULL, NULL, 0}, /* the sentinel is last: every entry above is reachable */
};

static int mime_index(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return -1;
    dot++;
    for (int i = 0; MIME[i].ext; i++)
        if (strcasecmp(dot, MIME[i].ext) == 0)
            return i;
    return -1;
}

const char *mime_type(const char *path)
{
    int mi = mime_index(path);
    return mi >= 0 ? MIME[mi].type : "application/octet-stream";
}

static char *put_hex(char *p, uint64_t v)
{
    return p + format_u64(p, v, 16);
}

/* Stat results, ETag and the prebuilt header block for an open fd. */
static void file_describe(mg_file *f, const struct stat *st, const mg_centry *e, const char *ctype,
                          int gzip_static, int is_gz)
{
    f->size = st->st_size;
    f->mtime = st->st_mtim;
    f->dev = st->st_dev;
    f->ino = st->st_ino;
    /* "mtime-size" in hex, as nginx; plus the sub-second part so that two
     * edits within one second of the same length still differ. */
    char *p = f->etag;
    *p++ = '"';
    p = put_hex(p, (uint64_t)st->st_mtim.tv_sec);
    *p++ = '-';
    p = put_hex(p, (uint64_t)st->st_size);
    if (st->st_mtim.tv_nsec) {
        *p++ = '.';
        p = put_hex(p, (uint64_t)st->st_mtim.tv_nsec);
    }
    *p++ = '"';
    f->etag_len = (int)(p - f->etag);

    /* made once per file, not per response: the static path takes them whole */
    mg_field *fl = f->fields;
    int n = 0;
    fl[n++] = (mg_field){"Content-Type", ctype, 12, (uint32_t)strlen(ctype)};
    if (is_gz)
        fl[n++] = (mg_field)MG_FIELD_LIT("Content-Encoding", "gzip");
    if (gzip_static && e->compressible)
        fl[n++] = (mg_field)MG_FIELD_LIT("Vary", "Accept-Encoding");
    fl[n++] = (mg_field){"Last-Modified", e->last_modified, 13, (uint32_t)strlen(e->last_modified)};
    fl[n++] = (mg_field){"ETag", f->etag, 4, (uint32_t)f->etag_len};
    fl[n++] = (mg_field)MG_FIELD_LIT("Accept-Ranges", "bytes");
    f->nfields = n;
}

static char *read_whole(int fd, int64_t size)
{
    char *base = malloc(MG_HEAD_ROOM + ((size_t)size ? (size_t)size : 1));
    if (!base)
        return NULL;
    char *buf = base + MG_HEAD_ROOM;
    int64_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, buf + got, (size_t)(size - got), got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(base);
            return NULL;
        }
        got += n;
    }
    return buf;
}


static int errno_status(int e)
{
    switch (e) {
    case EACCES:
    case EPERM: return 403;
    case EMFILE:
    case ENFILE:
    case ENOMEM: return 503;
    default: /* ENOENT, ENOTDIR, ELOOP, EXDEV (it left the root), ENAMETOOLONG */ return 404;
    }
}

/* Open and describe e->path (and e->path.gz).  Returns 0 or an HTTP status. */
static int entry_fill(mg_worker *w, mg_centry *e, const char *rel, int dir_request, char *pathbuf,
                      size_t pathcap)
{
    mg_server *srv = w->srv;
    struct stat st;
    size_t rel_len = strlen(rel);

    e->plain.fd = e->gz.fd = -1;
    e->plain.data = e->gz.data = NULL;
    e->plain.memo = e->gz.memo = (mg_head_memo){0};
    int fd = open_beneath(srv, srv->root_fd, rel_len ? rel : ".");
    if (fd < 0)
        return errno_status(errno);
    if (fstat(fd, &st) < 0) {
        close(fd);
        return 404;
    }
    memcpy(pathbuf, rel, rel_len + 1);
    if (S_ISDIR(st.st_mode)) {
        if (!dir_request) {
            close(fd);
            return 301;
        }
        int ifd = open_beneath(srv, fd, "index.html");
        int err = errno;
        close(fd);
        if (ifd < 0)
            return err == ENOENT ? 403 : errno_status(err); /* never a listing */
        fd = ifd;
        if (fstat(fd, &st) < 0) {
            close(fd);
            return 403;
        }
        if (rel_len + 12 >= pathcap) {
            close(fd);
            return 414;
        }
        memcpy(pathbuf + rel_len, rel_len ? "/index.html" : "index.html", rel_len ? 12 : 11);
    } else if (dir_request) {
        close(fd);
        return 404; /* "file.txt/": not a directory */
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return 403; /* a fifo, device or socket */
    }
    e->path = pathbuf;
    int mi = mime_index(e->path);
    const char *ctype = mi >= 0 ? MIME[mi].type : "application/octet-stream";
    e->compressible = mi >= 0 && MIME[mi].compressible;
    /* RFC 9110 8.8.2.1: a Last-Modified later than the response's Date must
     * be replaced by that date; an entry is filled within its response's
     * second, so "now" is that Date.  Tested by test_request_safety.py
     * test_far_mtime_dates. */
    time_t now = time(NULL);
    e->mtime_sec = st.st_mtim.tv_sec > now ? now : st.st_mtim.tv_sec;
    e->last_modified[http_date(e->last_modified, e->mtime_sec)] = '\0';
    e->plain.fd = fd;
    file_describe(&e->plain, &st, e, ctype, srv->cfg.gzip_static, 0);

    /* FILE.gz, if the client may get it: only when it is not older than FILE */
    size_t plen = strlen(e->path);
    if (srv->cfg.gzip_static && e->compressible && plen + 4 < pathcap) {
        memcpy(e->path + plen, ".gz", 4);
        int gfd = open_beneath(srv, srv->root_fd, e->path);
        e->path[plen] = '\0';
        struct stat gst;
        if (gfd >= 0 && fstat(gfd, &gst) == 0 && S_ISREG(gst.st_mode) &&
            (gst.st_mtim.tv_sec > st.st_mtim.tv_sec ||
             (gst.st_mtim.tv_sec == st.st_mtim.tv_sec && gst.st_mtim.tv_nsec >= st.st_mtim.tv_nsec))) {
            e->gz.fd = gfd;
            file_describe(&e->gz, &gst, e, ctype, 1, 1);
        } else if (gfd >= 0) {
            close(gfd);
        }
    }
    return 0;
}

/* Is the entry still what the file system has? */
static int same_file(mg_worker *w, const char *path, const mg_file *f)
{
    struct stat st;
    if (fstatat(w->srv->root_fd, path, &st, 0) < 0)
        return 0; /* gone */
    return st.st_dev == f->dev && st.st_ino == f->ino && st.st_size == f->size &&
        st.st_mtim.tv_sec == f->mtime.tv_sec && st.st_mtim.tv_nsec == f->mtime.tv_nsec;
}

static int entry_fresh(mg_worker *w, mg_centry *e)
{
    if (w->now_ms - e->checked_ms < 1000)
        return 1;
    if (!same_file(w, e->path, &e->plain))
        return 0;
    if (w->srv->cfg.gzip_static && e->compressible) {
        char gzpath[4096 + 4];
        size_t n = strlen(e->path);
        if (n + 4 > sizeof(gzpath))
            return 1;
        memcpy(gzpath, e->path, n);
        memcpy(gzpath + n, ".gz", 4);
        if (e->gz.fd >= 0) {
            if (!same_file(w, gzpath, &e->gz))
                return 0;
        } else {
            /* stale if a usable FILE.gz has appeared (not older than FILE) */
            struct stat st;
            if (fstatat(w->srv->root_fd, gzpath, &st, 0) == 0 && S_ISREG(st.st_mode) &&
                (st.st_mtim.tv_sec > e->plain.mtime.tv_sec ||
                 (st.st_mtim.tv_sec == e->plain.mtime.tv_sec &&
                  st.st_mtim.tv_nsec >= e->plain.mtime.tv_nsec)))
                return 0;
        }
    }
    e->checked_ms = w->now_ms;
    return 1;
}

/* A hit: e, found in the cache, is still what the file system has (else it
 * is removed and this returns NULL); it becomes the most recently used and
 * gets one more user.  file_open's lookup and static.c's memo of the last
 * path (which finds e without a lookup) both take an entry through here. */
mg_centry *file_hold(mg_worker *w, mg_centry *e)
{
    struct mg_file_cache *c = w->cache;
    if (!entry_fresh(w, e)) {
        entry_remove(w, e);
        return NULL;
    }
    if (c->lru_head != e) {
        lru_unlink(c, e);
        lru_push_front(c, e);
    }
    e->refs++;
    w->stats.cache_hits++;
    return e;
}

/* An entry's key is the path, with a "/" after it for a directory request
 * ("sub" is a 301, "sub/" its index.html).  Compared in place: no copy of the
 * key on the coroutine's stack, whose pages stay resident once touched. */
static int key_equal(const mg_centry *e, const char *rel, size_t rel_len, int dir_request)
{
    return e->key_len == rel_len + (size_t)dir_request && memcmp(e->key, rel, rel_len) == 0 &&
        (!dir_request || e->key[rel_len] == '/');
}

mg_centry *file_open(mg_coroutine *co, const char *rel, int dir_request, int *status)
{
    mg_worker *w = co->worker;
    struct mg_file_cache *c = w->cache;
    size_t rel_len = strlen(rel);

    if (rel_len > 4096) {
        *status = 414;
        return NULL;
    }
    dir_request = !!dir_request;
    size_t key_len = rel_len + (size_t)dir_request;
    uint32_t h = hash_path(FNV_OFFSET, rel, rel_len);
    if (dir_request)
        h = hash_path(h, "/", 1);
    if (c) {
        for (mg_centry *e = c->buckets[h & c->mask]; e; e = e->hnext) {
            if (e->hash != h || !key_equal(e, rel, rel_len, dir_request))
                continue;
            if (file_hold(w, e))
                return e;
            break; /* stale: removed */
        }
    }
    w->stats.cache_misses++;

    /* A miss: fill a new cache entry, or the request's scratch entry. */
    mg_centry *e = NULL;
    char *pathbuf;
    size_t pathcap;
    if (c) {
        /* evict the least recently used entries nobody is using */
        for (mg_centry *v = c->lru_tail; v && c->count >= c->max;) {
            mg_centry *prev = v->lru_prev;
            if (v->refs == 0)
                entry_remove(w, v);
            v = prev;
        }
        if (c->count < c->max && (e = calloc(1, sizeof(*e))) != NULL) {
            /* key, then the file's path: at most "key/index.html.gz" */
            if (!(e->key = malloc(2 * key_len + 20))) {
                free(e);
                e = NULL;
            }
        }
    }
    mg_centry *owned = e; /* NULL: the request's scratch entry, never freed here */
    if (e) {
        memcpy(e->key, rel, rel_len);
        if (dir_request)
            e->key[rel_len] = '/';
        e->key[key_len] = '\0';
        pathbuf = e->key + key_len + 1;
        pathcap = key_len + 19;
    } else {
        e = &co->xs->scratch;
        memset(e, 0, sizeof(*e));
        e->scratch = 1;
        pathbuf = co->xs->scratch_path;
        pathcap = sizeof(co->xs->scratch_path);
    }
    int st = entry_fill(w, e, rel, dir_request, pathbuf, pathcap);
    if (st) {
        *status = st;
        if (owned) { /* a new cache entry, not the request's scratch one */
            free(owned->key);
            free(owned);
        }
        return NULL;
    }
    e->refs = 1;
    if (e->scratch)
        return e;

    /* small files: keep the bytes */
    int small = w->srv->cfg.small_file_max;
    if (e->plain.size <= small)
        e->plain.data = read_whole(e->plain.fd, e->plain.size);
    if (e->gz.fd >= 0 && e->gz.size <= small)
        e->gz.data = read_whole(e->gz.fd, e->gz.size);
    e->hash = h;
    e->key_len = (uint32_t)key_len;
    e->checked_ms = w->now_ms;
    e->hnext = c->buckets[h & c->mask];
    c->buckets[h & c->mask] = e;
    lru_push_front(c, e);
    c->count++;
    w->stats.cache_entries = (uint64_t)c->count;
    return e;
}
