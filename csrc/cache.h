/* cache.h - the open-file cache: what static.c needs to know about a file, kept per worker. */
#ifndef MINGINX_CACHE_H
#define MINGINX_CACHE_H

#include <sys/stat.h>
#include "internal.h"
#include "exchange.h"

#define MG_FILE_FIELDS 8 /* fields of a file's own (cache.c file_describe) */

/* One representation on disk: the file itself, or its pre-compressed FILE.gz. */
typedef struct {
    int fd; /* -1: this representation does not exist */
    int64_t size;
    struct timespec mtime;
    dev_t dev;
    ino_t ino;
    char etag[64]; /* with its quotes */
    int etag_len;
    char *data; /* the whole file, when it is small enough; else NULL;
                                  * MG_HEAD_ROOM bytes before it are ours, for the kept head */
    /* the representation's own fields, made once per file, not per response
     * (Content-Type, Content-Encoding, Vary, Last-Modified, ETag,
     * Accept-Ranges): views of the strings of this entry */
    mg_field fields[MG_FILE_FIELDS];
    int nfields;
    /* Its 200 keep-alive head, kept by the protocol module the first time
     * (h1.c exchange_respond_memo) and reused with only its Date rewritten;
     * never for a request's scratch entry.  With data, it sits right before
     * the body, so head and body leave in one send(). */
    mg_head_memo memo;
} mg_file;

/* bytes kept free before a small file's data, for its head (a typical one is
 * about 250; a longer one, with many --header lines, is kept apart) */
#define MG_HEAD_ROOM 512

typedef struct mg_centry mg_centry;
struct mg_centry {
    uint32_t hash;
    char *key; /* the normalised request path ("sub/" for a directory) */
    uint32_t key_len;
    char *path;       /* the file relative to the root ("sub/index.html") */
    mg_centry *hnext; /* hash chain */
    mg_centry *lru_prev, *lru_next;
    int64_t checked_ms; /* last time we compared it with the file system */
    int refs;           /* coroutines using it; never freed while > 0 */
    int dead;           /* invalidated: freed when refs reaches 0 */
    int scratch;        /* not in the cache: a request's own entry */
    int compressible;   /* a text type: Vary: Accept-Encoding */
    time_t mtime_sec;
    char last_modified[32]; /* IMF-fixdate of the file's mtime */
    mg_file plain, gz;
};

/* Open what the request path names.  rel is the normalised path ("" for the
 * root); dir_request says the URL ended in '/'.  Returns an entry the caller
 * must give back with file_release(), or NULL with *status set (301 for a
 * directory asked without its slash, 403, 404, 503). */
MG_HIDDEN mg_centry *file_open(mg_coroutine *co, const char *rel, int dir_request, int *status);
MG_HIDDEN void file_release(mg_worker *w, mg_centry *e);
/* Take e, an entry of w's cache, as file_open() takes one it finds: NULL if
 * it went stale (then it is out of the cache). */
MG_HIDDEN mg_centry *file_hold(mg_worker *w, mg_centry *e);
/* openat2(RESOLVE_BENEATH) of rel under dirfd (static.c); -1 with errno. */
MG_HIDDEN int open_beneath(mg_server *srv, int dirfd, const char *rel);
MG_HIDDEN int file_cache_init(mg_worker *w, int entries);
/* The Content-Type of a path, by its extension (the static files' table). */
MG_HIDDEN const char *mime_type(const char *path);
MG_HIDDEN void file_cache_free(mg_worker *w);

#endif /* MINGINX_CACHE_H */
