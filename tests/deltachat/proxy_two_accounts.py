"""Two Delta Chat accounts on a frontdoor chatmail relay, both reaching it
only through its HTTPS CONNECT entry (Delta Chat's `https://` proxy): each
account sets `proxy_enabled=1` and `proxy_url=https://ADDR:PASSWORD@PROXY`
before it configures, IMAP and SMTP on HOST:PORT. A sends B an end-to-end
encrypted text after importing B's vCard, B answers. Prints VERSION,
CONFIGURED <addr>, RECEIVED B <text>, RECEIVED A <text>; exits 2 on timeout.
Warnings and errors from the core go to stderr.

With A_PROXY_QR, A's proxy comes from that QR code instead (the relay's
`chatmail invite --proxy`): it must parse as a proxy (prints QR A <kind>)
and is set with set_config_from_qr.

usage: proxy_two_accounts.py PROXY HOST PORT A_ADDR A_PW B_ADDR B_PW ACCOUNTS_DIR TIMEOUT_S [A_PROXY_QR]
  PROXY: host:port of the proxy, e.g. _chat.localhost:443
"""
import os
import sys
import threading
import time
import urllib.parse

from deltachat_rpc_client import DeltaChat, EventType, Rpc

proxy, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
a_addr, a_pw, b_addr, b_pw, acc_dir = sys.argv[4:9]
timeout = float(sys.argv[9])
a_proxy_qr = sys.argv[10] if len(sys.argv) > 10 else None


def bail():
    print("TIMEOUT", flush=True)
    os._exit(2)


watchdog = threading.Timer(timeout, bail)
watchdog.daemon = True
watchdog.start()


def wait_incoming(acc, who):
    while True:
        ev = acc.wait_for_event()
        if ev.kind in (EventType.WARNING, EventType.ERROR):
            print(who, ev.kind, ev.msg, file=sys.stderr, flush=True)
        if ev.kind == EventType.INCOMING_MSG:
            snap = acc.get_message_by_id(ev.msg_id).get_snapshot()
            return snap


with Rpc(accounts_dir=acc_dir) as rpc:
    dc = DeltaChat(rpc)
    print("VERSION", dc.get_system_info().deltachat_core_version, flush=True)
    accounts = []
    for addr, pw in ((a_addr, a_pw), (b_addr, b_pw)):
        acc = dc.add_account()
        if addr == a_addr and a_proxy_qr:
            qr = acc.check_qr(a_proxy_qr)
            print("QR A", qr["kind"], qr.get("host"), qr.get("port"), flush=True)
            acc.set_config_from_qr(a_proxy_qr)
        else:
            q = lambda s: urllib.parse.quote(s, safe="")
            acc.set_config("proxy_url", f"https://{q(addr)}:{q(pw)}@{proxy}")
            acc.set_config("proxy_enabled", "1")
        print("PROXY", addr, acc.get_config("proxy_enabled"), flush=True)
        t0 = time.time()
        acc.add_or_update_transport(
            {
                "addr": addr,
                "password": pw,
                "imapServer": host,
                "imapPort": port,
                "imapSecurity": "ssl",
                "smtpServer": host,
                "smtpPort": port,
                "smtpSecurity": "ssl",
            }
        )
        print("CONFIGURED", addr, flush=True)
        print(f"configured {addr} in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
        acc.bring_online()
        accounts.append(acc)
    alice, bob = accounts
    [contact] = alice.import_vcard(bob.self_contact.make_vcard())
    contact.create_chat().send_text("hello from A through the proxy")
    snap = wait_incoming(bob, "B")
    print("RECEIVED B", snap.text, "encrypted" if snap.show_padlock else "cleartext", flush=True)
    bob.get_chat_by_id(snap.chat_id).accept()
    bob.get_chat_by_id(snap.chat_id).send_text("hello from B through the proxy")
    snap = wait_incoming(alice, "A")
    print("RECEIVED A", snap.text, "encrypted" if snap.show_padlock else "cleartext", flush=True)
