"""Two Delta Chat accounts against one frontdoor: A sends B a text, B must
receive it. Prints VERSION, CONFIGURED lines, RECEIVED <text>; exits 2 on
timeout. Warnings and errors from the core go to stderr for diagnosis.

usage: two_accounts.py PORT A_ADDR A_PW B_ADDR B_PW ACCOUNTS_DIR TIMEOUT_S
"""
import os
import sys
import threading
import time

from deltachat_rpc_client import DeltaChat, EventType, Rpc

port = int(sys.argv[1])
a_addr, a_pw, b_addr, b_pw, acc_dir = sys.argv[2:7]
timeout = float(sys.argv[7])


def bail():
    print("TIMEOUT", flush=True)
    os._exit(2)


watchdog = threading.Timer(timeout, bail)
watchdog.daemon = True
watchdog.start()

with Rpc(accounts_dir=acc_dir) as rpc:
    dc = DeltaChat(rpc)
    info = dc.get_system_info()
    print("VERSION", info.deltachat_core_version, flush=True)
    accounts = []
    for addr, pw in ((a_addr, a_pw), (b_addr, b_pw)):
        acc = dc.add_account()
        t0 = time.time()
        acc.add_or_update_transport(
            {
                "addr": addr,
                "password": pw,
                "imapServer": "127.0.0.1",
                "imapPort": port,
                "imapSecurity": "ssl",
                "smtpServer": "127.0.0.1",
                "smtpPort": port,
                "smtpSecurity": "ssl",
                "certificateChecks": "acceptInvalidCertificates",
            }
        )
        print("CONFIGURED", addr, flush=True)
        print(f"configured {addr} in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
        acc.bring_online()
        accounts.append(acc)
    alice, bob = accounts
    [contact] = alice.import_vcard(bob.self_contact.make_vcard())
    contact.create_chat().send_text("hello from alice via frontdoor")
    t0 = time.time()
    while True:
        ev = bob.wait_for_event()
        if ev.kind in (EventType.WARNING, EventType.ERROR):
            print(ev.kind, ev.msg, file=sys.stderr, flush=True)
        if ev.kind == EventType.INCOMING_MSG:
            snap = bob.get_message_by_id(ev.msg_id).get_snapshot()
            print("RECEIVED", snap.text, flush=True)
            print(f"received after {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
            break
