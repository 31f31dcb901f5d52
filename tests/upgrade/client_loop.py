"""Clients that keep going while frontdoor reloads and upgrades: IMAP
logins (imaplib), submissions (smtplib) and HTTPS requests, each on its own
TLS connection through the front door, without pause. Stops when the stop
file appears (or after 180 s), then lists the INBOX and prints one JSON
document: counts, every failure with its reason, the subjects whose
submission was acknowledged, and the subjects in the INBOX."""
import http.client, imaplib, json, os, smtplib, ssl, sys, threading, time

port, user, password, stop_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
END = time.monotonic() + 180


def ctx(alpn):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols([alpn])
    return c


lock = threading.Lock()
stats = {"imap": 0, "smtp": 0, "https": 0}
failures, acked = [], []


def running():
    return not os.path.exists(stop_file) and time.monotonic() < END


def imap_once():
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx("imap"), timeout=30)
    m.login(user, password)
    typ, _ = m.select("INBOX")
    assert typ == "OK", typ
    m.logout()


def smtp_once(n):
    subject = f"upgrade-{os.getpid()}-{n}"
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx("smtp"), timeout=30) as s:
        s.login(user, password)
        s.sendmail(user, [user], f"From: {user}\r\nTo: {user}\r\nSubject: {subject}\r\n\r\nbody {subject}\r\n")
    return subject


def https_once():
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx("http/1.1"), timeout=30)
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
    c.close()


def worker(kind):
    n = 0
    while running():
        n += 1
        try:
            if kind == "imap":
                imap_once()
            elif kind == "smtp":
                s = smtp_once(n)
                with lock:
                    acked.append(s)
            else:
                https_once()
            with lock:
                stats[kind] += 1
        except Exception as e:  # every failure is reported, none retried
            with lock:
                failures.append(f"{kind}: {type(e).__name__}: {e}")


threads = [threading.Thread(target=worker, args=(k,)) for k in ("imap", "imap", "smtp", "https")]
for t in threads:
    t.start()
for t in threads:
    t.join()

m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx("imap"), timeout=30)
m.login(user, password)
m.select("INBOX")
typ, data = m.fetch("1:*", "(BODY[HEADER.FIELDS (SUBJECT)])") if acked else ("OK", [])
inbox = []
for part in data:
    if isinstance(part, tuple):
        line = part[1].decode().strip()
        if line.lower().startswith("subject:"):
            inbox.append(line.split(":", 1)[1].strip())
m.logout()
print(json.dumps({"stats": stats, "failures": failures, "acked": acked, "inbox": inbox}))
