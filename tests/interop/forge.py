#!/usr/bin/env python3
"""A local process that goes around frontdoor and talks to the backends
directly, as any user on the host could try. Prints one JSON object on
stdout and exits 0 whatever the backends answer (the object says).

  forge.py imap PORT LOGIN   PROXY v2 header to 127.0.0.1:PORT claiming a
                             pinned key whose login is LOGIN (PP2_TYPE_SSL
                             with PP2_SUBTYPE_SSL_CN), then AUTHENTICATE EXTERNAL
  forge.py tcp PORT          only connect to 127.0.0.1:PORT
  forge.py smtp SOCKET ATTRS...
                             on a Postfix UNIX-domain socket: EHLO, then for
                             each ATTRS "XCLIENT ATTRS" and EHLO again
"""
import json
import socket
import struct
import sys

TIMEOUT = 10
# HAProxy's proxy-protocol.txt, section 2.2.
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02


def tlv(kind, value):
    return struct.pack("!BH", kind, len(value)) + value


def proxy_header(cn):
    addrs = socket.inet_aton("192.0.2.66") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40066, 443)
    ssl = struct.pack("!BI", PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN, 0)
    ssl += tlv(PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3") + tlv(PP2_SUBTYPE_SSL_CN, cn.encode())
    body = addrs + tlv(PP2_TYPE_SSL, ssl)
    # Version 2, PROXY; TCP over IPv4.
    return SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def lines(f, stop):
    """Read reply lines until one satisfies stop (at most 50)."""
    out = []
    for _ in range(50):
        line = f.readline().decode(errors="replace")
        if not line:
            break
        out.append(line.rstrip("\r\n"))
        if stop(line):
            break
    return out


def imap(port, login):
    out = {}
    try:
        s = socket.create_connection(("127.0.0.1", port), TIMEOUT)
    except OSError as e:
        return {"connect": "error", "error": str(e)}
    out["connect"] = "ok"
    s.settimeout(TIMEOUT)
    f = s.makefile("rb")
    try:
        s.sendall(proxy_header(login))
        out["greeting"] = f.readline().decode(errors="replace").strip()
        s.sendall(b"a AUTHENTICATE EXTERNAL =\r\n")
        out["auth"] = lines(f, lambda l: l.startswith("a "))[-1:]
        s.sendall(b"b LOGOUT\r\n")
    except OSError as e:
        out["error"] = str(e)
    return out


def smtp(path, attrs):
    out = {}
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect(path)
    except OSError as e:
        return {"connect": "error", "error": str(e)}
    out["connect"] = "ok"
    f = s.makefile("rb")
    last = lambda l: len(l) < 4 or l[3] != "-"
    try:
        out["greeting"] = lines(f, last)
        s.sendall(b"EHLO intruder.example.net\r\n")
        out["ehlo"] = lines(f, last)
        out["xclient"] = []
        for a in attrs:
            s.sendall(b"XCLIENT " + a.encode() + b"\r\n")
            reply = lines(f, last)
            s.sendall(b"EHLO intruder.example.net\r\n")
            ehlo = lines(f, last)
            out["xclient"].append({"reply": reply, "offered": any("XCLIENT" in l for l in ehlo)})
        s.sendall(b"QUIT\r\n")
    except OSError as e:
        out["error"] = str(e)
    return out


def tcp(port):
    try:
        socket.create_connection(("127.0.0.1", port), TIMEOUT).close()
    except OSError as e:
        return {"connect": "error", "error": str(e)}
    return {"connect": "ok"}


def main():
    mode, target = sys.argv[1:3]
    if mode == "imap":
        out = imap(int(target), sys.argv[3])
    elif mode == "tcp":
        out = tcp(int(target))
    else:
        out = smtp(target, sys.argv[3:])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
