"""A small IMAP client over TLS for the chatmail IMAP checks: raw commands,
literals, METADATA parsing, and COMPRESS=DEFLATE with zlib raw deflate
(wbits=-15) in both directions. Prints one JSON object on stdout.

usage: client.py CHECK PORT [ARGS...]
  caps PORT USER PW            capabilities before and after login (imaplib)
  meta PORT USER PW            GETMETADATA of the shared server entries
  settoken PORT USER PW TOKEN  SETMETADATA INBOX /private/devicetoken
  gettoken PORT USER PW        GETMETADATA INBOX /private/devicetoken
  bad PORT USER PW             malformed or refused METADATA/COMPRESS input
  compress PORT USER PW        LOGIN, COMPRESS, SELECT, FETCH, IDLE, DONE
"""
import imaplib
import json
import socket
import ssl
import sys
import time
import zlib

DEADLINE = time.time() + 30


def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


class Conn:
    def __init__(self, port):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s = ctx().wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.comp = None
        self.decomp = None
        self.wire_out = 0
        self.n = 0
        self.greeting = self.line()

    def send(self, data):
        if self.comp:
            data = self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH)
        self.wire_out += len(data)
        self.s.sendall(data)

    def fill(self):
        if time.time() > DEADLINE:
            raise TimeoutError("no reply in time; have %r" % self.buf)
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("closed; have %r" % self.buf)
        if self.decomp:
            chunk = self.decomp.decompress(chunk)
        self.buf += chunk

    def line(self):
        """One response line with its literals inlined (bytes)."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self.fill()
            i = self.buf.index(b"\r\n") + 2
            part, self.buf = self.buf[:i], self.buf[i:]
            out += part
            if part.endswith(b"}\r\n") and b"{" in part:
                n = int(part[part.rindex(b"{") + 1 : -3].rstrip(b"+"))
                while len(self.buf) < n:
                    self.fill()
                out += self.buf[:n]
                self.buf = self.buf[n:]
                continue
            return out

    def cmd(self, text):
        """Send a tagged command; returns (untagged lines, tagged line)."""
        self.n += 1
        tag = b"t%d" % self.n
        self.send(tag + b" " + text + b"\r\n")
        lines = []
        while True:
            l = self.line()
            if l.startswith(tag + b" "):
                return lines, l
            lines.append(l)

    def login(self, user, pw):
        _, t = self.cmd(b'LOGIN "%s" "%s"' % (user.encode(), pw.encode()))
        assert b" OK " in t, t
        return t

    def start_deflate(self):
        self.comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.decomp = zlib.decompressobj(-15)
        # Bytes after the tagged OK are compressed already.
        rest, self.buf = self.buf, b""
        if rest:
            self.buf = self.decomp.decompress(rest)


def tokens(b):
    """IMAP tokens of a response line (literals inlined): str, None, '(' ')'."""
    out, i = [], 0
    while i < len(b):
        c = b[i : i + 1]
        if c in (b" ", b"\r", b"\n"):
            i += 1
        elif c in (b"(", b")"):
            out.append(c.decode())
            i += 1
        elif c == b'"':
            i += 1
            s = b""
            while b[i : i + 1] != b'"':
                if b[i : i + 1] == b"\\":
                    i += 1
                s += b[i : i + 1]
                i += 1
            out.append(s.decode())
            i += 1
        elif c == b"{":
            j = b.index(b"}", i)
            n = int(b[i + 1 : j].rstrip(b"+"))
            start = j + 3
            out.append(b[start : start + n].decode())
            i = start + n
        else:
            j = i
            while j < len(b) and b[j : j + 1] not in (b" ", b"(", b")", b"\r"):
                j += 1
            a = b[i:j].decode()
            out.append(None if a == "NIL" else a)
            i = j
    return out


def metadata(lines):
    """{entry: value} from `* METADATA mailbox (entry value ...)` lines."""
    got = {}
    for l in lines:
        t = tokens(l)
        if t[:2] != ["*", "METADATA"]:
            continue
        body = t[t.index("(") + 1 : -1]
        for k, v in zip(body[::2], body[1::2]):
            got[k] = v
    return got


def text(b):
    return b.decode(errors="replace").strip()


check, port = sys.argv[1], int(sys.argv[2])
user, pw = sys.argv[3], sys.argv[4]
res = {}

if check == "caps":
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx())
    res["before"] = sorted(c.upper() for c in m.capabilities)
    m.login(user, pw)
    typ, dat = m.capability()
    res["after"] = sorted(dat[0].decode().upper().split())
    m.logout()

elif check == "meta":
    c = Conn(port)
    c.login(user, pw)
    entries = [
        "/shared/comment",
        "/shared/admin",
        "/shared/vendor/deltachat/irohrelay",
        "/shared/vendor/deltachat/turn",
        "/shared/vendor/deltachat/appversions",
    ]
    # As Delta Chat asks (src/imap.rs update_metadata).
    lines, t = c.cmd(b'GETMETADATA "" (' + " ".join(entries).encode() + b")")
    res["tagged"] = text(t)
    res["server"] = metadata(lines)
    # Shared entries of a mailbox are not the server's.
    lines, t = c.cmd(b"GETMETADATA INBOX (/shared/vendor/deltachat/irohrelay)")
    res["inbox"] = metadata(lines)
    # DEPTH 1 lists what is below /shared/vendor/deltachat.
    lines, t = c.cmd(b'GETMETADATA (DEPTH 1) "" (/shared/vendor/deltachat)')
    res["depth1"] = sorted(metadata(lines))
    # MAXSIZE leaves long values out and says so.
    lines, t = c.cmd(b'GETMETADATA (MAXSIZE 30) "" (/shared/comment /shared/vendor/deltachat/appversions)')
    res["maxsize"] = {"entries": metadata(lines), "tagged": text(t)}

elif check == "settoken":
    c = Conn(port)
    c.login(user, pw)
    _, t = c.cmd(b'SETMETADATA "INBOX" (/private/devicetoken "%s")' % sys.argv[5].encode())
    res["tagged"] = text(t)

elif check == "gettoken":
    c = Conn(port)
    c.login(user, pw)
    lines, t = c.cmd(b'GETMETADATA "INBOX" (/private/devicetoken)')
    res["tagged"] = text(t)
    res["token"] = metadata(lines).get("/private/devicetoken")

elif check == "bad":
    c = Conn(port)
    _, t = c.cmd(b"COMPRESS DEFLATE")
    res["compress_before_login"] = text(t)
    c.login(user, pw)
    cases = {
        "not_private_or_shared": b'GETMETADATA "" (/public/x)',
        "double_slash": b'GETMETADATA "" (/private//x)',
        "wildcard": b'GETMETADATA "" (/private/*)',
        "set_shared": b'SETMETADATA "" (/shared/comment "mine")',
        "token_with_space": b'SETMETADATA INBOX (/private/devicetoken "two words")',
        "too_large": b"SETMETADATA INBOX (/private/comment {5000+}\r\n" + b"x" * 5000 + b")",
        "no_such_mailbox": b"SETMETADATA Nowhere (/private/comment \"x\")",
        "no_entries": b'GETMETADATA "" ()',
        "compress_unknown": b"COMPRESS LZ4",
    }
    for name, cmd in cases.items():
        _, t = c.cmd(cmd)
        res[name] = text(t)
    # The session still works afterwards.
    _, t = c.cmd(b"NOOP")
    res["noop_after"] = text(t)

elif check == "compress":
    c = Conn(port)
    c.login(user, pw)
    _, t = c.cmd(b"COMPRESS DEFLATE")
    res["compress"] = text(t)
    c.start_deflate()
    lines, t = c.cmd(b"CAPABILITY")
    res["caps_after"] = text(lines[0]) if lines else ""
    _, t = c.cmd(b"COMPRESS DEFLATE")
    res["compress_again"] = text(t)
    lines, t = c.cmd(b"SELECT INBOX")
    res["select"] = text(t)
    res["exists"] = [text(l) for l in lines if l.endswith(b" EXISTS\r\n")]
    lines, t = c.cmd(b"UID FETCH 1:* (UID BODY.PEEK[])")
    res["fetch"] = text(t)
    res["fetched"] = b"".join(lines).decode(errors="replace")
    c.n += 1
    tag = b"t%d" % c.n
    c.send(tag + b" IDLE\r\n")
    res["idle"] = text(c.line())
    # Another session appends; the IDLE session hears of it at once.
    other = Conn(port)
    other.login(user, pw)
    msg = b"From: x@example.org\r\nSubject: second\r\n\r\nwhile idling\r\n"
    other.send(b"a APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
    while not other.line().startswith(b"a "):
        pass
    res["idle_update"] = text(c.line())
    c.send(b"DONE\r\n")
    while True:
        l = c.line()
        if l.startswith(tag):
            res["done"] = text(l)
            break
    lines, t = c.cmd(b"LOGOUT")
    res["logout"] = text(t)
    res["wire_out"] = c.wire_out

print(json.dumps(res))
