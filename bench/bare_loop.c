/* bare_loop.c - the ceiling: one epoll loop answering every request with a file held in memory.
 *
 * No parsing beyond finding the end of each head, no files, no coroutines:
 * what a 2-core machine can do at all for "GET a 6 KiB file" over keep-alive.
 *     cc -O2 -o bare_loop bench/bare_loop.c && ./bare_loop PORT FILE
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    FILE *f = fopen(argv[2], "rb");
    if (!f)
        return 1;
    static char body[1 << 20], resp[(1 << 20) + 512], buf[65536];
    size_t blen = fread(body, 1, sizeof(body), f);
    fclose(f);
    int hl = snprintf(resp, 512, "HTTP/1.1 200 OK\r\nServer: bare\r\nContent-Type: text/html\r\n"
                                 "Content-Length: %zu\r\n\r\n", blen);
    memcpy(resp + hl, body, blen);
    size_t rlen = (size_t)hl + blen;

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4096) < 0)
        return 1;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[512];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            ssize_t r = recv(fd, buf, sizeof(buf), 0);
            if (r <= 0) {
                close(fd);
                continue;
            }
            /* one response per head in what arrived (pipelining too) */
            for (char *p = buf; (p = memmem(p, (size_t)(buf + r - p), "\r\n\r\n", 4)); p += 4)
                if (send(fd, resp, rlen, MSG_NOSIGNAL) < 0)
                    break;
        }
    }
}
