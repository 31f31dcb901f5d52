"""The account page's refusals, at the HTTP level (Python's http.client over
TLS with ALPN http/1.1).

Usage: http.py PORT WORKDIR

Prints one line per check, `NAME value…`, for the Rust test to assert on.
"""

import http.client, imaplib, os, re, ssl, subprocess, sys, urllib.parse, uuid

port, work = int(sys.argv[1]), sys.argv[2]


def ctx(alpn):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols([alpn])
    return c


def req(method, path, body=None, cookies=None, ctype="application/x-www-form-urlencoded"):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx("http/1.1"), timeout=10)
    h = {}
    if cookies:
        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if body is not None:
        if isinstance(body, dict):
            body = urllib.parse.urlencode(body)
        h["Content-Type"] = ctype
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read().decode(errors="replace")
    c.close()
    return r, data


def set_cookies(r):
    out = {}
    for k, v in r.getheaders():
        if k.lower() == "set-cookie":
            name, _, rest = v.partition("=")
            out[name] = rest.split(";")[0]
            print("COOKIE-FLAGS", name, all(f in v for f in ("Secure", "HttpOnly", "SameSite=Strict")))
    return out


def csrf_of(page):
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    return m.group(1) if m else ""


def login(user, password):
    r, page = req("GET", "/account")
    pre = set_cookies(r)
    r, body = req("POST", "/account/login", {"csrf": csrf_of(page), "user": user, "password": password}, pre)
    return r, body, set_cookies(r)


def registry():
    with open(os.path.join(work, "keys.yaml")) as f:
        return f.read()


def make_cert(name):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", f"{name}.key", "-subj", f"/CN={name}", "-days", "1",
                    "-out", f"{name}.crt"], cwd=work, check=True, capture_output=True)
    with open(os.path.join(work, f"{name}.crt")) as f:
        return f.read()


pem = make_cert("x1")
before = registry()

# The page's headers.
r, page = req("GET", "/account")
print("LOGIN-PAGE", r.status, r.getheader("Cache-Control"), "script-src" not in (r.getheader("Content-Security-Policy") or "x"),
      (r.getheader("Content-Security-Policy") or "").startswith("default-src 'none'"), "<script" not in page)

# No session: every change refused.
for action in ("add", "generate", "remove", "preauth", "logout"):
    r, _ = req("POST", f"/account/{action}", {"csrf": "x", "name": "bob-phone", "login": "alice@example.org", "pem": pem,
                                              "p12_password": "secret99", "p12_password2": "secret99"})
    print("NO-SESSION", action, r.status)
print("UNCHANGED", registry() == before)

# A login with a wrong CSRF token is refused, as is one without the cookie.
r, page = req("GET", "/account")
pre = set_cookies(r)
r, _ = req("POST", "/account/login", {"csrf": "wrong", "user": "alice@example.org", "password": "alice-pw"}, pre)
print("LOGIN-BAD-CSRF", r.status)
r, _ = req("POST", "/account/login", {"csrf": csrf_of(page), "user": "alice@example.org", "password": "alice-pw"})
print("LOGIN-NO-COOKIE", r.status)

# Logged in: a wrong or missing CSRF token is refused for every change.
r, _, sess = login("alice@example.org", "alice-pw")
print("LOGIN", r.status, r.getheader("Location"), "fd_account" in sess)
r, page = req("GET", "/account", cookies=sess)
print("PAGE", r.status, "bob-phone" not in page, "alice@example.org" in page)
token = csrf_of(page)
for bad in ("", "wrong", token[:-1]):
    for action in ("add", "generate", "remove", "preauth", "logout"):
        form = {"name": "evil", "login": "alice@example.org", "pem": pem,
                "p12_password": "secret99", "p12_password2": "secret99"}
        if bad:
            form["csrf"] = bad
        r, _ = req("POST", f"/account/{action}", form, sess)
        print("BAD-CSRF", action, r.status)
print("UNCHANGED", registry() == before)

# Another account's address or key: refused.
r, body = req("POST", "/account/add", {"csrf": token, "name": "evil", "login": "bob@example.org", "pem": pem}, sess)
print("OTHER-LOGIN", r.status, "not an address of your account" in body)
for action in ("remove", "preauth"):
    r, _ = req("POST", f"/account/{action}", {"csrf": token, "name": "bob-phone", "preauth": "off"}, sess)
    print("OTHER-KEY", action, r.status)
r, _ = req("POST", "/account/remove", {"csrf": token, "name": "../bob-phone"}, sess)
print("OTHER-KEY traversal", r.status)
print("UNCHANGED", registry() == before)

# Markup in a certificate's name is not echoed raw; a private key is refused.
r, body = req("POST", "/account/add", {"csrf": token, "name": "<b>x", "login": "alice@example.org", "pem": pem}, sess)
print("BAD-NAME", r.status, "<b>x" not in body)
with open(os.path.join(work, "x1.key")) as f:
    r, body = req("POST", "/account/add", {"csrf": token, "name": "k", "login": "alice@example.org", "pem": f.read()}, sess)
print("PRIVATE-KEY", r.status)

# Multipart upload of a DER certificate works; the keys-per-account limit holds.
der = subprocess.run(["openssl", "x509", "-in", os.path.join(work, "x1.crt"), "-outform", "der"],
                     check=True, capture_output=True).stdout
b = uuid.uuid4().hex
mp = (f"--{b}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n"
      f"--{b}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nder1\r\n"
      f"--{b}\r\nContent-Disposition: form-data; name=\"login\"\r\n\r\nalice@example.org\r\n"
      f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x1.der\"\r\n"
      f"Content-Type: application/octet-stream\r\n\r\n").encode() + der + f"\r\n--{b}--\r\n".encode()
r, _ = req("POST", "/account/add", mp, sess, ctype=f"multipart/form-data; boundary={b}")
print("ADD-DER", r.status, "alice@example.org/der1" in registry(), "added_by: self" in registry())
r, _ = req("POST", "/account/add", {"csrf": token, "name": "x2", "login": "alice@example.org", "pem": make_cert("x2")}, sess)
print("ADD-2", r.status)
r, body = req("POST", "/account/add", {"csrf": token, "name": "x3", "login": "alice@example.org", "pem": make_cert("x3")}, sess)
print("ADD-OVER-LIMIT", r.status, "most allowed" in body)
r, _ = req("POST", "/account/preauth", {"csrf": token, "name": "der1", "preauth": "off"}, sess)
print("PREAUTH-OFF", r.status, "imap_preauth: false" in registry())

# That was the tenth change from this address; the config allows twelve an hour.
codes = []
for on in ("on", "off", "on"):
    r, body = req("POST", "/account/preauth", {"csrf": token, "name": "der1", "preauth": on}, sess)
    codes.append(str(r.status))
print("RATE", ",".join(codes), "at most 12 an hour" in body, "imap_preauth: false" in registry())

# Logout ends the session on the server.
r, _ = req("POST", "/account/logout", {"csrf": token}, sess)
print("LOGOUT", r.status)
r, _ = req("POST", "/account/remove", {"csrf": token, "name": "der1"}, sess)
print("AFTER-LOGOUT", r.status)

# Wrong passwords are throttled like IMAP logins, in the same tables: after
# ten failures from this address, even the right password is refused, on the
# page and on IMAP.
codes = []
for i in range(12):
    r, _, _ = login("carol@example.org", f"wrong-{i}")
    codes.append(r.status)
print("WRONG", ",".join(map(str, codes)))
r, _, _ = login("alice@example.org", "alice-pw")
print("RIGHT-THROTTLED", r.status)
M = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx("imap"), timeout=10)
try:
    M.login("alice@example.org", "alice-pw")
    print("IMAP-THROTTLED", False)
except imaplib.IMAP4.error as e:
    print("IMAP-THROTTLED", True)
