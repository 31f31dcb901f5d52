"""Delta Chat across two chatmail relays: account A signs up on DOMAIN_A,
account B on DOMAIN_B (both by `dcaccount:DOMAIN` QR codes: the client
picks its credentials, the first login creates the account). A imports B's
vCard and writes; B accepts the contact request and answers. Prints:

  VERSION <core version>
  CONFIGURED <A|B> <addr>
  RECEIVED <B|A> <encrypted 0/1> <text>

and exits 2 on timeout. The core's warnings and errors go to stderr.

usage: two_relays.py DOMAIN_A DOMAIN_B ACCOUNTS_DIR TIMEOUT_S
"""
import os
import sys
import threading
import time

from deltachat_rpc_client import DeltaChat, EventType, Rpc

domain_a, domain_b, acc_dir = sys.argv[1:4]
timeout = float(sys.argv[4])


def bail():
    print("TIMEOUT", flush=True)
    os._exit(2)


watchdog = threading.Timer(timeout, bail)
watchdog.daemon = True
watchdog.start()


def receive(name, acc):
    """The next incoming message's snapshot; core warnings to stderr."""
    while True:
        ev = acc.wait_for_event()
        if ev.kind in (EventType.WARNING, EventType.ERROR):
            print(name, ev.kind, ev.msg, file=sys.stderr, flush=True)
        if ev.kind == EventType.INCOMING_MSG:
            return acc.get_message_by_id(ev.msg_id).get_snapshot()


with Rpc(accounts_dir=acc_dir) as rpc:
    dc = DeltaChat(rpc)
    print("VERSION", dc.get_system_info().deltachat_core_version, flush=True)
    accounts = {}
    for name, domain in (("A", domain_a), ("B", domain_b)):
        acc = dc.add_account()
        t0 = time.time()
        acc.add_transport_from_qr(f"dcaccount:{domain}")
        print("CONFIGURED", name, acc.get_config("configured_addr"), flush=True)
        print(f"{name} configured in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
        acc.bring_online()
        accounts[name] = acc
    a, b = accounts["A"], accounts["B"]

    [contact] = a.import_vcard(b.self_contact.make_vcard())
    t0 = time.time()
    contact.create_chat().send_text("hello from A on the first relay")
    snap = receive("B", b)
    print("RECEIVED", "B", int(bool(snap.show_padlock)), snap.text, flush=True)
    print(f"A to B in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)

    chat = b.get_chat_by_id(snap.chat_id)
    chat.accept()
    t0 = time.time()
    chat.send_text("hello from B on the second relay")
    snap = receive("A", a)
    print("RECEIVED", "A", int(bool(snap.show_padlock)), snap.text, flush=True)
    print(f"B to A in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
