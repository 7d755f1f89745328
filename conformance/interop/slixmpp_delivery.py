#!/usr/bin/env python3
"""Delivery interop with slixmpp: offline messages, carbons between two resources, and a
message archive query paged with RSM, each through slixmpp's own plugins.

1. A sends 20 messages to B while B is offline; B logs in and gets all 20, in order, each
   with a <delay/> (XEP-0160, XEP-0203).
2. B logs in a second resource; both enable carbons (XEP-0280). A message from A to B's first
   resource reaches the second as a received carbon; one from the first resource to A reaches
   the second as a sent carbon.
3. B turns archiving on (XEP-0441 preferences), A sends 30 messages, and B reads them back
   from the archive (XEP-0313) in pages of 10, forwards and backwards.

Exits 0 and prints PASS lines only if everything arrived once and in order. Usage:

    slixmpp_delivery.py HOST PORT JID_A PASSWORD_A JID_B PASSWORD_B
"""
import asyncio
import logging
import sys

from slixmpp_support import InteropClient, login, until


class Client(InteropClient):
    def __init__(self, jid, password):
        super().__init__(jid, password, ("xep_0030", "xep_0059", "xep_0199", "xep_0203", "xep_0280",
                                         "xep_0297", "xep_0313", "xep_0441"))
        self.messages = []
        self.carbons_received = []
        self.carbons_sent = []
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("carbon_received", lambda m: self.carbons_received.append(m["carbon_received"]["body"]))
        self.add_event_handler("carbon_sent", lambda m: self.carbons_sent.append(m["carbon_sent"]["body"]))

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            delayed = msg["delay"]["stamp"] is not None
            self.messages.append((msg["body"], delayed))


async def main():
    host, port, jid_a, pw_a, jid_b, pw_b = sys.argv[1:7]
    bare_b = jid_b.split("/")[0]
    a = await login(Client, host, port, jid_a + "/desk", pw_a)

    # 1. Offline messages.
    expected = [f"offline-{i}" for i in range(20)]
    for body in expected:
        a.send_message(mto=bare_b, mbody=body, mtype="chat")
    await a["xep_0199"].ping(jid=a.boundjid.domain)  # handled after the messages were routed
    b1 = await login(Client, host, port, bare_b + "/one", pw_b)
    await until(lambda: len(b1.messages) >= 20, "offline messages")
    if [body for body, _ in b1.messages] != expected or not all(d for _, d in b1.messages):
        raise SystemExit(f"FAIL: offline messages arrived as {b1.messages}")
    print("PASS: 20 offline messages delivered at login, in order, with delay")

    # 2. Carbons between two resources.
    b2 = await login(Client, host, port, bare_b + "/two", pw_b)
    await b1["xep_0280"].enable()
    await b2["xep_0280"].enable()
    a.send_message(mto=b1.boundjid.full, mbody="to-one", mtype="chat")
    await until(lambda: b2.carbons_received == ["to-one"], "the received carbon")
    b1.send_message(mto=a.boundjid.bare, mbody="from-one", mtype="chat")
    await until(lambda: b2.carbons_sent == ["from-one"], "the sent carbon")
    await until(lambda: ("from-one", False) in a.messages, "the message from resource one")
    print("PASS: carbons: received and sent copies reached the second resource")

    # 3. Archive with paging.
    await b1["xep_0441"].set_preferences(default="always")
    archived = [f"archived-{i}" for i in range(30)]
    for body in archived:
        a.send_message(mto=bare_b, mbody=body, mtype="chat")
    await until(lambda: sum(1 for body, _ in b1.messages if body.startswith("archived-")) >= 30, "live copies")
    forward = [m["mam_result"]["forwarded"]["stanza"]["body"]
               async for m in b1["xep_0313"].iterate(with_jid=a.boundjid.bare, rsm={"max": 10})]
    if forward != archived:
        raise SystemExit(f"FAIL: forward pages gave {forward}")
    backward = [m["mam_result"]["forwarded"]["stanza"]["body"]
                async for m in b1["xep_0313"].iterate(with_jid=a.boundjid.bare, reverse=True, rsm={"max": 10})]
    if backward != list(reversed(archived)):
        raise SystemExit(f"FAIL: backward pages gave {backward}")
    print("PASS: archive query paged by 10, forwards and backwards: 30 messages in order")
    for client in (a, b1, b2):
        client.disconnect()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main())
