#!/usr/bin/env python3
"""A second, independent client for benches/run.sh: Python's ssl (OpenSSL).

  rtt.py --addr 127.0.0.1:8443 pingpong --rounds 5000 [--size 32] [--plain]
  rtt.py --addr 127.0.0.1:8443 handshake --count 2000 [--resume] [--cert C --key K]
  rtt.py --addr 127.0.0.1:7005 serve [--proxy-header v2|v1|none]

pingpong: one connection, the backend's greeting line read, then `sendall`
SIZE bytes and read SIZE back, ROUNDS times, one at a time; prints the
p50/p99 round trip in microseconds.

handshake: COUNT connections one after another, each a full TLS handshake
(or, with --resume, a TLS 1.3 resumption with the ticket of the connection
before) that reads the greeting and closes; prints how many were resumed.

serve: a greeting+echo backend in Python (one thread per connection): it
reads the PROXY header, writes `bench ready\r\n`, then echoes until EOF;
prints `listening addr=…` once bound.

Output is one line of key=value pairs, as examples/loadgen.rs prints.
Loopback addresses only.
"""
import argparse
import ipaddress
import socket
import ssl
import sys
import time

GREETING_MAX = 4096


def parse_addr(s):
    host, _, port = s.rpartition(":")
    host = host.strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"rtt.py: {host} is not a loopback address")
    return host, int(port)


def context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if args.alpn:
        ctx.set_alpn_protocols([args.alpn])
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def read_line(s):
    """The backend's greeting: bytes up to and with the first LF."""
    got = b""
    while not got.endswith(b"\n"):
        b = s.recv(GREETING_MAX)
        if not b:
            raise SystemExit("rtt.py: connection closed before the greeting")
        got += b
        if len(got) > GREETING_MAX:
            raise SystemExit("rtt.py: greeting too long")
    return got


def dial(args, ctx, session=None):
    raw = socket.create_connection(args.addr, timeout=args.timeout)
    if args.plain:
        return raw
    return ctx.wrap_socket(raw, server_hostname=args.sni, session=session)


def pct(sorted_ns, p):
    i = min(len(sorted_ns), max(1, int(-(-len(sorted_ns) * p // 1)))) - 1
    return sorted_ns[i] / 1000.0


def pingpong(args, ctx):
    s = dial(args, ctx)
    read_line(s)
    msg = b"p" * args.size
    lat = []
    deadline = time.monotonic() + args.deadline
    for i in range(args.warmup + args.rounds):
        t = time.perf_counter_ns()
        s.sendall(msg)
        got = 0
        while got < args.size:
            b = s.recv(args.size - got)
            if not b:
                raise SystemExit("rtt.py: connection closed in a round trip")
            got += len(b)
        if i >= args.warmup:
            lat.append(time.perf_counter_ns() - t)
        if time.monotonic() > deadline:
            raise SystemExit("rtt.py: deadline passed")
    s.close()
    lat.sort()
    print(
        f"mode=pingpong client=python-ssl n={len(lat)} size={args.size} "
        f"p50_us={pct(lat, 0.5):.1f} p99_us={pct(lat, 0.99):.1f} max_us={lat[-1] / 1000:.1f}"
    )


def handshake(args, ctx):
    session = None
    resumed = 0
    deadline = time.monotonic() + args.deadline
    t0 = time.perf_counter()
    for _ in range(args.count):
        s = dial(args, ctx, session if args.resume else None)
        read_line(s)
        if not args.plain:
            resumed += int(s.session_reused)
            # The ticket arrives after the handshake; it is there once
            # the greeting has been read.
            session = s.session
        s.close()
        if time.monotonic() > deadline:
            raise SystemExit("rtt.py: deadline passed")
    dt = time.perf_counter() - t0
    print(
        f"mode=handshake client=python-ssl n={args.count} resumed={resumed} "
        f"per_conn_us={dt * 1e6 / args.count:.1f}"
    )


def read_proxy_header(c, mode):
    if mode == "v2":
        h = recv_exact(c, 16)
        if h[:12] != b"\r\n\r\n\x00\r\nQUIT\n":
            raise ValueError("not a PROXY v2 header")
        recv_exact(c, int.from_bytes(h[14:16], "big"))
    elif mode == "v1":
        line = b""
        while not line.endswith(b"\r\n"):
            b = c.recv(1)
            if not b or len(line) > 107:
                raise ValueError("bad PROXY v1 header")
            line += b


def recv_exact(c, n):
    got = b""
    while len(got) < n:
        b = c.recv(n - len(got))
        if not b:
            raise ValueError("closed in the PROXY header")
        got += b
    return got


def echo(c, mode):
    import contextlib
    with contextlib.closing(c):
        try:
            c.settimeout(1800)
            read_proxy_header(c, mode)
            c.sendall(b"bench ready\r\n")
            while True:
                b = c.recv(65536)
                if not b:
                    return
                c.sendall(b)
        except (OSError, ValueError):
            return


def serve(args):
    import threading
    ls = socket.create_server(args.addr)
    name = {"v2": "V2", "v1": "V1", "none": "None"}[args.proxy_header]
    print(f"listening mode={name} addr={ls.getsockname()[0]}:{ls.getsockname()[1]}", flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=echo, args=(c, args.proxy_header), daemon=True).start()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", type=parse_addr, default=("127.0.0.1", 8443))
    p.add_argument("--sni", default="localhost")
    p.add_argument("--alpn", default="imap")
    p.add_argument("--plain", action="store_true")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--deadline", type=float, default=180.0)
    sub = p.add_subparsers(dest="mode", required=True)
    pp = sub.add_parser("pingpong")
    pp.add_argument("--rounds", type=int, default=5000)
    pp.add_argument("--size", type=int, default=32)
    pp.add_argument("--warmup", type=int, default=100)
    hs = sub.add_parser("handshake")
    hs.add_argument("--count", type=int, default=2000)
    hs.add_argument("--resume", action="store_true")
    sv = sub.add_parser("serve")
    sv.add_argument("--proxy-header", choices=["v2", "v1", "none"], default="v2")
    args = p.parse_args()
    if args.mode == "serve":
        return serve(args)
    ctx = context(args)
    {"pingpong": pingpong, "handshake": handshake}[args.mode](args, ctx)


if __name__ == "__main__":
    try:
        main()
    except (OSError, ssl.SSLError) as e:
        print(f"rtt.py: {e}", file=sys.stderr)
        sys.exit(1)
