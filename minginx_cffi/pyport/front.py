"""front.py - what the server does in front of an app: the forwarded client, --header lines (csrc/front.c).

THE CLIENT of a request, as handlers and the access log see it, is computed
once per request, right after its head is parsed (conn.py calls
request_client), and read with conn_client(co): (address, port, scheme).
The rules are csrc/front.c's, which says why: only a peer in
--forwarded-allow-ips is believed; X-Forwarded-For is read from the right,
the first address that is not a trusted proxy is the client (all trusted,
or "*": the leftmost); what is chosen must be an IP address, else the peer
stays; X-Forwarded-Proto is "http" or "https", else ignored; Forwarded (RFC
7239) is read the same way, element by element, and only when no
X-Forwarded-For / X-Forwarded-Proto is present.
"""

import ipaddress
import socket

from .response import handler_fields

FWD_MAX = 64  # list entries kept, the rightmost (csrc/front.c FWD_MAX)

# the fields a static answer writes itself, beside those the handler writer keeps
STATIC_OWNED = frozenset(
    (
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"date",
        b"server",
        b"content-range",
        b"content-type",
        b"content-encoding",
        b"etag",
        b"last-modified",
        b"accept-ranges",
        b"location",
        b"allow",
    )
)
ADD_HEADERS_MAX = 1024


def static_fields(fields):
    """--header fields as (name, value) pairs, checked as a handler's are
    (response.handler_fields) and against the static answers' own fields (csrc/front.c
    mg_static_fields); ValueError(why).  The C engine's limit is on their HTTP/1.1 lines."""
    fields = list(fields)
    for name, _ in fields:
        if bytes(name).lower() in STATIC_OWNED:
            raise ValueError("the server writes this header itself")
    pairs, _, _ = handler_fields(fields)
    if sum(len(n) + len(v) + 4 for n, v in pairs) > ADD_HEADERS_MAX:
        raise ValueError("the headers are longer than 1024 bytes")
    return pairs


def _packed(text):
    """text as an IP address: (family, its bytes), or None if it is not one.  inet_pton,
    as front.c parse_ip: ipaddress would also take an IPv6 scope ("fe80::1%eth0", or
    "::1%a b\"c", anything after the %), which the C refuses, and would then hand it on to
    REMOTE_ADDR and the access log as the client's address."""
    if not text or len(text) >= 64:
        return None
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            return fam, socket.inet_pton(fam, text)
        except (OSError, ValueError, UnicodeError):
            pass
    return None


def _ip(text):
    p = _packed(text)
    return None if p is None else ipaddress.ip_address(p[1])


def _trusted(nets, text):
    a = _ip(text)
    if a is None:
        return False
    if a.version == 6 and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return any(a.version == n.version and a in n for n in nets)


def _choose(entries, nets, trust_all):
    """uvicorn's rule: the rightmost entry that is not a trusted proxy; all trusted (or
    "*"), the leftmost.  entries are (address text, proto or None)."""
    entries = entries[-FWD_MAX:]
    if not entries:
        return None
    if not trust_all:
        for e in reversed(entries):
            if not _trusted(nets, e[0]):
                return e
    return entries[0]


def _node_address(v):
    """A Forwarded for= node's address part ("" for "unknown", "_hidden" and junk)."""
    if v.startswith("["):
        close = v.find("]")
        if close < 0 or (close + 1 < len(v) and v[close + 1] != ":"):
            return ""
        return v[1:close]
    return v.partition(":")[0]


def _forwarded_entries(value):
    """RFC 7239 section 4: elements at commas, pairs at semicolons, quoted-strings kept whole."""
    out = []
    i, n = 0, len(value)
    while i <= n:
        fv = proto = None
        any_pair = False
        while True:
            while i < n and value[i] in " \t;":
                i += 1
            ks = i
            while i < n and value[i] not in "=;,":
                i += 1
            key = value[ks:i].rstrip(" \t").lower()
            val = None
            if i < n and value[i] == "=":
                i += 1
                if i < n and value[i] == '"':
                    i += 1
                    s = i
                    while i < n and value[i] != '"':
                        i += 2 if value[i] == "\\" and i + 1 < n else 1
                    val = value[s : min(i, n)]
                    if i < n:
                        i += 1
                else:
                    s = i
                    while i < n and value[i] not in ";,":
                        i += 1
                    val = value[s:i]
            if val is not None and key == "for":
                fv, any_pair = val, True
            elif val is not None and key == "proto":
                proto, any_pair = val, True
            elif key:
                any_pair = True
            while i < n and value[i] not in ";,":
                i += 1
            if i >= n or value[i] == ",":
                break
        if any_pair:
            out.append((_node_address(fv).strip(" \t") if fv is not None else "", proto))
        i += 1
    return out


def _scheme(v):
    v = v.strip(" \t").lower()
    return v if v in ("http", "https") else None


def _client_text(text):
    """The chosen address's canonical text, inet_ntop's as in front.c set_client
    ("::ffff:1.2.3.4", where str(ipaddress) writes "::ffff:102:304")."""
    p = _packed(text)
    return None if p is None else socket.inet_ntop(*p)


def request_client(co, req):
    """Set co.client = (address, port, scheme) for the request just parsed (--proxy-headers)."""
    cfg = co.worker.cfg
    peer = conn_peer(co)
    co.client = (peer[0], peer[1], "http")
    nets, trust_all = cfg["forwarded_allow"], cfg["forwarded_allow_all"]
    if not trust_all and not _trusted(nets, peer[0]):
        return  # an untrusted peer's headers change nothing
    xff, xfp, fwd, have_x = [], None, [], False
    for name, value, _ in req.headers:
        lname = name.lower()
        if lname == b"x-forwarded-for":
            have_x = True
            xff += [(e.strip(" \t"), None) for e in value.decode("latin-1").split(",")]
        elif lname == b"x-forwarded-proto":
            have_x = True
            xfp = value.decode("latin-1")
        elif lname == b"forwarded":
            fwd += _forwarded_entries(value.decode("latin-1"))
    if have_x:
        e = _choose(xff, nets, trust_all)
        proto = xfp
    else:
        e = _choose(fwd, nets, trust_all)
        proto = e[1] if e is not None else None
    addr, port = peer
    if e is not None:
        text = _client_text(e[0])
        if text is not None:
            addr, port = text, 0
    scheme = (_scheme(proto) if proto is not None else None) or "http"
    co.client = (addr, port, scheme)


def conn_peer(co):
    """The connection's peer (address, port), looked up once per connection."""
    if co.peer is None:
        if co.sock.family == socket.AF_UNIX:
            co.peer = ("unix:", 0)  # --uds: no peer address; nginx's $remote_addr says "unix:"
            return co.peer
        try:
            host, port = co.sock.getpeername()[:2]
            co.peer = (host.partition("%")[0], port)  # inet_ntop's text, as conn.c: no "%scope"
        except (OSError, ValueError):
            co.peer = ("", 0)
    return co.peer


def conn_client(co):
    """THE CLIENT of the request in flight: (address, port, scheme)."""
    if co.client is None:
        peer = conn_peer(co)
        co.client = (peer[0], peer[1], "http")
    return co.client
