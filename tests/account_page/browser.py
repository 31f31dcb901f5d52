"""The account page in headless Chromium, driven over WebDriver (the W3C
protocol spoken to chromedriver with the standard library only).

Usage: browser.py PORT WORKDIR SCREENSHOT

Logs in as alice, generates a key and downloads its .p12, opens an IMAP
session through the front door with that .p12 (extracted with openssl
pkcs12) and checks the PREAUTH greeting, makes a second certificate with the
openssl commands the page shows and uploads it, saves a screenshot, removes
the first key and waits (bounded) for its open IMAP session to be closed.
Prints one line per step for the Rust test to check.
"""

import base64, json, os, socket, ssl, subprocess, sys, time, urllib.request

port, work, shot = int(sys.argv[1]), sys.argv[2], sys.argv[3]
base = f"https://127.0.0.1:{port}"
dl = os.path.join(work, "downloads")
os.makedirs(dl, exist_ok=True)
P12_PASSWORD = "correct horse 42"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(what, cond, within=10.0, every=0.05):
    end = time.monotonic() + within
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


drv_port = free_port()
driver = subprocess.Popen(
    ["chromedriver", f"--port={drv_port}"],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
wd = f"http://127.0.0.1:{drv_port}"


class WebDriverError(Exception):
    pass


def call(method, path, body=None, timeout=20):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(wd + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"{}").get("value")
    except urllib.error.HTTPError as e:
        raise WebDriverError(f"webdriver {method} {path}: {e.code} {e.read()[:300]!r}")


def driver_up():
    try:
        with urllib.request.urlopen(wd + "/status", timeout=1) as r:
            return json.loads(r.read())["value"]["ready"]
    except Exception:
        return False


sid = None
imap_conns = []
try:
    wait_for("chromedriver", driver_up)
    caps = {"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "acceptInsecureCerts": True,
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1100,1750",
                     f"--user-data-dir={os.path.join(work, 'profile')}"],
            "prefs": {"download.default_directory": dl,
                      "download.prompt_for_download": False},
        },
    }}}
    sess = call("POST", "/session", caps, timeout=30)
    sid = sess["sessionId"]
    print("BROWSER", sess["capabilities"].get("browserVersion"))
    call("POST", f"/session/{sid}/goog/cdp/execute",
         {"cmd": "Browser.setDownloadBehavior",
          "params": {"behavior": "allow", "downloadPath": dl}})
    S = f"/session/{sid}"

    def go(url):
        call("POST", S + "/url", {"url": url})

    def find(css):
        v = call("POST", S + "/element", {"using": "css selector", "value": css})
        return list(v.values())[0]

    def finds(css):
        v = call("POST", S + "/elements", {"using": "css selector", "value": css})
        return [list(e.values())[0] for e in v]

    def typ(css, text):
        e = find(css)
        call("POST", f"{S}/element/{e}/clear", {})
        call("POST", f"{S}/element/{e}/value", {"text": text})

    def click(css):
        call("POST", f"{S}/element/{find(css)}/click", {})

    def fresh(read):
        # The page may be replaced between finding an element and reading
        # it (a form was just submitted): then it is read again, bounded.
        for _ in range(50):
            try:
                return read()
            except WebDriverError as e:
                if "stale element" not in str(e):
                    raise
                time.sleep(0.05)
        raise SystemExit("the page kept changing")

    def text(css):
        return fresh(lambda: call("GET", f"{S}/element/{find(css)}/text"))

    def source():
        return call("GET", S + "/source")

    def rows():
        return fresh(lambda: [call("GET", f"{S}/element/{e}/attribute/data-name")
                              for e in finds("#keys tr[data-name]")])

    # Log in.
    go(base + "/account")
    typ("#login input[name=user]", "alice@example.org")
    typ("#login input[name=password]", "alice-pw")
    click("#login button")
    wait_for("the key list", lambda: "#keys" and finds("#keys"))
    print("LOGGED-IN", text("#account"))

    # Generate a key; the browser downloads phone.p12.
    typ("#generate input[name=name]", "phone")
    typ("#generate input[name=p12_password]", P12_PASSWORD)
    typ("#generate input[name=p12_password2]", P12_PASSWORD)
    click("#generate button")
    p12 = os.path.join(dl, "phone.p12")
    wait_for("the .p12 download",
             lambda: os.path.exists(p12) and os.path.getsize(p12) > 0
             and not os.path.exists(p12 + ".crdownload"))
    print("DOWNLOADED", os.path.basename(p12), os.path.getsize(p12) > 100)
    go(base + "/account")
    print("ROWS", ",".join(rows()))
    print("NOTICE", "phone" in text("#notice"))

    # The .p12 logs in to IMAP through the front door: PREAUTH.
    pem = os.path.join(work, "phone.pem")
    subprocess.run(["openssl", "pkcs12", "-in", p12, "-passin", f"pass:{P12_PASSWORD}",
                    "-nodes", "-out", pem], check=True, capture_output=True)

    def imap(certfile, keyfile=None):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
        c.set_alpn_protocols(["imap"])
        c.load_cert_chain(certfile, keyfile)
        s = c.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
        f = s.makefile("rb")
        return s, f, f.readline().decode().strip()

    def preauth_session(certfile, keyfile=None):
        # A new key is in force once the running registry has reloaded the
        # edit (within about a second): retry until PREAUTH, bounded.
        end = time.monotonic() + 10
        while True:
            s, f, g = imap(certfile, keyfile)
            if g.startswith("* PREAUTH") or time.monotonic() > end:
                return s, f, g
            s.close()
            time.sleep(0.2)

    s1, f1, greeting = preauth_session(pem)
    imap_conns.append(s1)
    print("IMAP-P12", greeting.split(" ")[1], "alice@example.org" in greeting or greeting)

    # A second certificate made with the page's own openssl commands, for
    # the device name typed into the page.
    typ("#device input[name=device]", "tablet")
    click("#device button")
    wait_for("the tablet commands", lambda: "-out tablet.crt" in text("#openssl"))
    cmds = [l for l in text("#openssl").splitlines()
            if l.startswith("openssl genpkey") or l.startswith("openssl req")]
    for c in cmds:
        subprocess.run(["sh", "-c", c], cwd=work, check=True, capture_output=True)
    crt = os.path.join(work, "tablet.crt")
    typ("#add input[name=name]", "tablet")
    call("POST", f"{S}/element/{find('#add input[type=file]')}/value", {"text": crt})
    click("#add button")
    wait_for("the tablet row", lambda: "tablet" in rows())
    print("ROWS", ",".join(rows()))
    s2, f2, greeting2 = preauth_session(crt, os.path.join(work, "tablet.key"))
    print("IMAP-OPENSSL", greeting2.split(" ")[1])
    s2.close()

    # The screenshot for the docs.
    png = base64.b64decode(call("GET", S + "/screenshot"))
    with open(shot, "wb") as fh:
        fh.write(png)
    print("SCREENSHOT", png[:8] == b"\x89PNG\r\n\x1a\n", len(png) > 10000)

    # Remove the first key: its open IMAP session is closed.
    def click_remove(name):
        e = [r for r in finds("#keys tr[data-name]")
             if call("GET", f"{S}/element/{r}/attribute/data-name") == name][0]
        btn = call("POST", f"{S}/element/{e}/element",
                   {"using": "css selector", "value": "button.remove"})
        call("POST", f"{S}/element/{list(btn.values())[0]}/click", {})

    fresh(lambda: click_remove("phone"))
    wait_for("the phone row to go", lambda: "phone" not in rows())
    print("ROWS", ",".join(rows()))
    t0 = time.monotonic()
    s1.settimeout(10)
    try:
        line = f1.readline()
    except (ssl.SSLError, OSError) as e:
        line = b""
    print("IMAP-CLOSED", line == b"" or line.startswith(b"* BYE"), round(time.monotonic() - t0, 1) < 10)

    # Log out: the page asks for a login again.
    click("#logout")
    wait_for("the login form", lambda: finds("#login"))
    print("LOGGED-OUT", True)
finally:
    for s in imap_conns:
        try:
            s.close()
        except Exception:
            pass
    if sid:
        try:
            call("DELETE", f"/session/{sid}")
        except BaseException:
            pass
    driver.terminate()
    try:
        driver.wait(5)
    except subprocess.TimeoutExpired:
        driver.kill()
