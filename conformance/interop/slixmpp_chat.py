#!/usr/bin/env python3
"""Interop check with slixmpp, a client library Starling did not write.

Two accounts log in over STARTTLS with SCRAM, subscribe to each other's presence in both
directions, see each other come online, then exchange N messages each way. Exits 0 only if
every message arrived once and in order. Usage:

    slixmpp_chat.py HOST PORT JID1 PASSWORD1 JID2 PASSWORD2 [N]
"""
import asyncio
import logging
import ssl
import sys

import slixmpp


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.received = []
        self.online = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.contact_online = asyncio.Event()
        self.mechanism = None
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_available", self.on_available)
        self.add_event_handler("presence_subscribe", self.on_subscribe)
        self.add_event_handler("presence_subscribed", lambda p: self.subscribed.set())
        self.add_event_handler("auth_success", self.on_auth)
        # Accept the test server's self-signed certificate.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.auto_authorize = None
        self.auto_subscribe = False

    def on_auth(self, _):
        self.mechanism = getattr(self.plugin["feature_mechanisms"], "mech", None)

    async def start(self, _):
        await self.get_roster()
        self.send_presence()
        self.online.set()

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal"):
            self.received.append(msg["body"])

    def on_available(self, presence):
        if presence["from"].bare != self.boundjid.bare:
            self.contact_online.set()

    def on_subscribe(self, presence):
        self.send_presence(pto=presence["from"].bare, ptype="subscribed")


async def wait(event, what, timeout=20):
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        raise SystemExit(f"FAIL: timed out waiting for {what}")


async def main():
    host, port, jid1, pw1, jid2, pw2 = sys.argv[1:7]
    count = int(sys.argv[7]) if len(sys.argv) > 7 else 200
    a, b = Peer(jid1, pw1), Peer(jid2, pw2)
    for peer in (a, b):
        peer.enable_plaintext = False
        peer.connect(host=host, port=int(port))
    await wait(a.online, "first login")
    await wait(b.online, "second login")
    a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
    await wait(a.subscribed, "subscription approval A->B")
    b.send_presence(pto=a.boundjid.bare, ptype="subscribe")
    await wait(b.subscribed, "subscription approval B->A")
    await wait(a.contact_online, "B's presence at A")
    await wait(b.contact_online, "A's presence at B")
    roster_a = a.client_roster[b.boundjid.bare]["subscription"]
    roster_b = b.client_roster[a.boundjid.bare]["subscription"]
    if roster_a != "both" or roster_b != "both":
        raise SystemExit(f"FAIL: subscriptions are {roster_a!r} and {roster_b!r}, expected both")
    for i in range(count):
        a.send_message(mto=b.boundjid.bare, mbody=f"a-{i}", mtype="chat")
        b.send_message(mto=a.boundjid.bare, mbody=f"b-{i}", mtype="chat")
    for _ in range(200):
        if len(a.received) >= count and len(b.received) >= count:
            break
        await asyncio.sleep(0.1)
    expected_a = [f"b-{i}" for i in range(count)]
    expected_b = [f"a-{i}" for i in range(count)]
    if a.received != expected_a or b.received != expected_b:
        raise SystemExit(
            f"FAIL: A got {len(a.received)} (in order: {a.received == expected_a}), "
            f"B got {len(b.received)} (in order: {b.received == expected_b})"
        )
    a.disconnect()
    b.disconnect()
    mechanism = getattr(a.mechanism, "name", a.mechanism)
    print(f"PASS: {count} messages each way, in order, no duplicates; subscriptions both; "
          f"mechanism {mechanism}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main())
