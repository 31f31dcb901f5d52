"""Delta Chat onboarding on a chatmail relay, with no manual server settings.

Account A scans `dcaccount:DOMAIN` (the client picks its own random
credentials; the relay creates the account on first login), account B
scans `dcaccount:https://DOMAIN/new` (the relay mints the credentials).
Both configure through autoconfig. A imports B's vCard and writes; then B
joins A by SecureJoin and writes back. Prints one line per fact:

  VERSION <core version>
  CONFIGURED <A|B> <addr>
  INFO <A|B> <key> <value>     (used_transport_settings, imap_server_comment)
  RECEIVED <B|A> <encrypted 0/1> <text>
  SECUREJOIN done

and exits 2 on timeout. The core's warnings and errors go to stderr.

usage: chatmail_onboard.py DOMAIN ACCOUNTS_DIR TIMEOUT_S
"""
import os
import sys
import threading
import time

from deltachat_rpc_client import DeltaChat, EventType, Rpc

domain, acc_dir = sys.argv[1:3]
timeout = float(sys.argv[3])


def bail():
    print("TIMEOUT", flush=True)
    os._exit(2)


watchdog = threading.Timer(timeout, bail)
watchdog.daemon = True
watchdog.start()


def info(name, acc):
    i = acc.get_info()
    for key in ("used_transport_settings", "imap_server_comment"):
        value = " ".join(str(i.get(key, "")).split())
        print("INFO", name, key, value, flush=True)


def receive(name, acc):
    """The next incoming message's (encrypted, text); core warnings to stderr."""
    while True:
        ev = acc.wait_for_event()
        if ev.kind in (EventType.WARNING, EventType.ERROR):
            print(name, ev.kind, ev.msg, file=sys.stderr, flush=True)
        if ev.kind == EventType.INCOMING_MSG:
            snap = acc.get_message_by_id(ev.msg_id).get_snapshot()
            return int(bool(snap.show_padlock)), snap.text


with Rpc(accounts_dir=acc_dir) as rpc:
    dc = DeltaChat(rpc)
    print("VERSION", dc.get_system_info().deltachat_core_version, flush=True)
    accounts = {}
    for name, qr in (("A", f"dcaccount:{domain}"), ("B", f"dcaccount:https://{domain}/new")):
        acc = dc.add_account()
        t0 = time.time()
        acc.add_transport_from_qr(qr)
        addr = acc.get_config("configured_addr")
        print("CONFIGURED", name, addr, flush=True)
        print(f"{name} configured in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
        info(name, acc)
        acc.bring_online()
        accounts[name] = acc
    a, b = accounts["A"], accounts["B"]

    [contact] = a.import_vcard(b.self_contact.make_vcard())
    contact.create_chat().send_text("hello from A by vcard")
    enc, text = receive("B", b)
    print("RECEIVED", "B", enc, text, flush=True)

    b.secure_join(a.get_qr_code())
    a.wait_for_securejoin_inviter_success()
    b.wait_for_securejoin_joiner_success()
    print("SECUREJOIN done", flush=True)
    a_on_b = b.get_contact_by_addr(a.get_config("configured_addr"))
    a_on_b.create_chat().send_text("hello from B after securejoin")
    enc, text = receive("A", a)
    print("RECEIVED", "A", enc, text, flush=True)
