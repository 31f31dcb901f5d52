#!/usr/bin/env python3
"""Mail clients for the interop tests: Python's imaplib and smtplib over TLS
with ALPN, optionally with a client key, optionally from a chosen loopback
source address. Prints one JSON object on stdout; exits 1 on failure with the
reason in that object.

  client.py imap  --port P [--src IP] --ca CERT [--cert C --key K]
                  (--login USER PASS | --external) [--wait-for TEXT] [--timeout S]
  client.py smtp  --port P [--src IP] --ca CERT [--cert C --key K]
                  [--login USER PASS] --from ADDR --to ADDR --body TEXT
                  [--xclient-attempt LOGIN] [--no-alpn]
"""
import argparse
import imaplib
import json
import smtplib
import socket
import ssl
import sys
import time

SNI = "mail.example.org"


def context(args, alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(args.ca)
    if not args.no_alpn:
        ctx.set_alpn_protocols([alpn])
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


class Imap(imaplib.IMAP4_SSL):
    """IMAP4_SSL that connects from a chosen source address with SNI."""

    src = None

    def _create_socket(self, timeout):
        sock = socket.create_connection(
            (self.host, self.port), timeout, source_address=(self.src, 0) if self.src else None
        )
        return self.ssl_context.wrap_socket(sock, server_hostname=SNI)


class Smtp(smtplib.SMTP_SSL):
    """SMTP_SSL that sends SNI (and checks the certificate) for SNI, not the IP."""

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout, self.source_address)
        return self.context.wrap_socket(sock, server_hostname=SNI)


def imap(args):
    out = {}
    Imap.src = args.src
    m = Imap("127.0.0.1", args.port, ssl_context=context(args, "imap"), timeout=args.timeout)
    out["alpn"] = m.sock.selected_alpn_protocol()
    out["welcome"] = m.welcome.decode()
    try:
        if args.external:
            typ, data = m.authenticate("EXTERNAL", lambda _challenge: b"")
        elif args.login:
            typ, data = m.login(args.login[0], args.login[1])
        else:
            typ, data = "OK", [b"preauth"]
    except imaplib.IMAP4.error as e:
        out["login"] = "NO"
        out["error"] = str(e)
        print(json.dumps(out))
        return 1
    out["login"] = typ
    bodies = []
    deadline = time.monotonic() + args.timeout
    while True:
        typ, data = m.select("INBOX")
        typ, data = m.search(None, "ALL")
        bodies = []
        for num in data[0].split():
            typ, msg = m.fetch(num, "(RFC822)")
            bodies.append(msg[0][1].decode(errors="replace"))
        if args.wait_for is None or any(args.wait_for in b for b in bodies):
            break
        if time.monotonic() > deadline:
            break
        m.close()
        # sleep-ok: the interval of a poll bounded by `deadline`.
        time.sleep(0.2)
    out["messages"] = bodies
    m.logout()
    print(json.dumps(out))
    return 0 if args.wait_for is None or any(args.wait_for in b for b in bodies) else 1


def smtp(args):
    out = {}
    s = Smtp(
        "127.0.0.1",
        args.port,
        context=context(args, "smtp"),
        timeout=args.timeout,
        source_address=(args.src, 0) if args.src else None,
        local_hostname="client.example.net",
    )
    # SMTP_SSL.connect() consumed the greeting; keep it for the test.
    code, msg = s.ehlo()
    out["ehlo"] = msg.decode()
    out["alpn"] = s.sock.selected_alpn_protocol()
    try:
        if args.xclient_attempt:
            code, msg = s.docmd("XCLIENT", "LOGIN=" + args.xclient_attempt)
            out["xclient"] = [code, msg.decode()]
            s.ehlo()
        if args.login:
            s.login(args.login[0], args.login[1])
            out["login"] = "OK"
        body = "From: {}\r\nTo: {}\r\nSubject: interop\r\n\r\n{}\r\n".format(
            getattr(args, "from"), args.to, args.body
        )
        refused = s.sendmail(getattr(args, "from"), [args.to], body)
        out["sent"] = True
        out["refused"] = {k: [v[0], v[1].decode()] for k, v in refused.items()}
    except smtplib.SMTPRecipientsRefused as e:
        out["sent"] = False
        out["refused"] = {k: [v[0], v[1].decode()] for k, v in e.recipients.items()}
    except smtplib.SMTPResponseException as e:
        out["sent"] = False
        out["error"] = [e.smtp_code, e.smtp_error.decode(errors="replace")]
    try:
        s.quit()
    except smtplib.SMTPException:
        pass
    print(json.dumps(out))
    return 0 if out.get("sent") else 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["imap", "smtp"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--src")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--login", nargs=2)
    p.add_argument("--external", action="store_true")
    p.add_argument("--wait-for")
    p.add_argument("--timeout", type=float, default=15)
    p.add_argument("--from")
    p.add_argument("--to")
    p.add_argument("--body")
    p.add_argument("--xclient-attempt")
    p.add_argument("--no-alpn", action="store_true", help="offer no ALPN (a fixed-route listener)")
    args = p.parse_args()
    return imap(args) if args.mode == "imap" else smtp(args)


if __name__ == "__main__":
    sys.exit(main())
