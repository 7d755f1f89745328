#!/usr/bin/env python3
"""Multi-user chat interop with slixmpp, through its own XEP-0045, XEP-0030 and XEP-0004
plugins (join_muc_wait, get_room_config, set_room_config, set_affiliation, set_subject, ...).

1. A creates a room (status 201), fetches the configuration form, fills in a name and makes
   the room members-only and persistent, and submits it; reading the form again and the
   room's disco#info show the new configuration.
2. B, not a member, is refused (registration-required); A grants B membership, the member
   list names B, and B enters: B sees A's presence as owner and moderator, A sees B's as
   member and participant.
3. Both send three group messages, interleaved; each gets all six (its own reflected), once,
   in order.
4. A changes the subject; both get it from A's occupant JID.
5. B changes its presence to away and A sees it; B leaves and A sees it go.

Exits 0 and prints PASS lines only if everything happened as described. Usage:

    slixmpp_muc.py HOST PORT JID_A PASSWORD_A JID_B PASSWORD_B
"""
import asyncio
import logging
import sys

import slixmpp
from slixmpp_support import InteropClient, login, until
from slixmpp.exceptions import PresenceError

ROOM = "tea@conference.localhost"
NAME = "Tea party"
SUBJECT = "Scones at four"


class Client(InteropClient):
    def __init__(self, jid, password):
        super().__init__(jid, password, ("xep_0004", "xep_0030", "xep_0045", "xep_0199"))
        self.messages = []  # (nick, body) of group messages, in arrival order
        self.subjects = []  # (nick, subject) of subject changes
        self.presences = []  # (nick, type, show) of occupant presence
        self.add_event_handler(f"muc::{ROOM}::message", self.on_message)
        self.add_event_handler(f"muc::{ROOM}::groupchat_subject", self.on_subject)
        self.add_event_handler(f"muc::{ROOM}::presence", self.on_presence)

    def on_message(self, msg):
        self.messages.append((msg["from"].resource, msg["body"]))

    def on_subject(self, msg):
        self.subjects.append((msg["from"].resource, msg["subject"]))

    def on_presence(self, pres):
        self.presences.append((pres["from"].resource, pres["type"], pres["show"]))

    def occupant(self, nick, key):
        return self.plugin["xep_0045"].get_jid_property(ROOM, nick, key)


def check(ok, what):
    if not ok:
        raise SystemExit(f"FAIL: {what}")


async def main():
    host, port, jid_a, pw_a, jid_b, pw_b = sys.argv[1:7]
    bare_b = jid_b.split("/")[0]
    a = await login(Client, host, port, jid_a + "/desk", pw_a)
    b = await login(Client, host, port, bare_b + "/laptop", pw_b)
    muc_a, muc_b = a.plugin["xep_0045"], b.plugin["xep_0045"]

    # 1. Create and configure.
    own, _subject, _occupants, _history = await muc_a.join_muc_wait(ROOM, "Alice", maxstanzas=0, timeout=20)
    codes = own["muc"]["status_codes"]
    check(110 in codes and 201 in codes, f"creating the room gave status codes {codes}")
    form = await muc_a.get_room_config(ROOM)
    fields = form.get_fields()
    for var in ("muc#roomconfig_roomname", "muc#roomconfig_membersonly", "muc#roomconfig_persistentroom"):
        check(var in fields, f"the configuration form has no {var}: {list(fields)}")
    fields["muc#roomconfig_roomname"]["value"] = NAME
    fields["muc#roomconfig_membersonly"]["value"] = True
    fields["muc#roomconfig_persistentroom"]["value"] = True
    await muc_a.set_room_config(ROOM, form)
    values = (await muc_a.get_room_config(ROOM)).get_values()
    check(values["muc#roomconfig_roomname"] == NAME, f"room name is {values['muc#roomconfig_roomname']!r}")
    check(values["muc#roomconfig_membersonly"] is True, "the room is not members-only")
    check(values["muc#roomconfig_persistentroom"] is True, "the room is not persistent")
    info = await b.plugin["xep_0030"].get_info(jid=ROOM)
    identities = info["disco_info"]["identities"]
    features = info["disco_info"]["features"]
    check(any(i[0] == "conference" and i[3] == NAME for i in identities), f"disco#info identities {identities}")
    check("muc_membersonly" in features and "muc_persistent" in features, f"disco#info features {features}")
    print("PASS: room created (201) and configured through the form: name, members-only, persistent")

    # 2. Membership and entering.
    try:
        await muc_b.join_muc_wait(ROOM, "Bob", timeout=20)
        raise SystemExit("FAIL: a non-member entered a members-only room")
    except PresenceError as error:
        check(error.condition == "registration-required", f"refused with {error.condition}")
    await muc_a.set_affiliation(ROOM, "member", jid=bare_b)
    members = await muc_a.get_affiliation_list(ROOM, "member")
    check([slixmpp.JID(m).bare for m in members] == [bare_b], f"member list {members}")
    own_b, _subject, occupants, _history = await muc_b.join_muc_wait(ROOM, "Bob", timeout=20)
    check(110 in own_b["muc"]["status_codes"], "B's own presence has no status 110")
    # slixmpp lists B's own presence among the occupants too.
    others = [p["from"].resource for p in occupants if p["from"].resource != "Bob"]
    check(others == ["Alice"], f"B saw occupants {occupants}")
    check(b.occupant("Alice", "affiliation") == "owner" and b.occupant("Alice", "role") == "moderator",
          "B does not see A as owner and moderator")
    await until(lambda: "Bob" in muc_a.get_roster(ROOM), "A to see B enter")
    check(a.occupant("Bob", "affiliation") == "member" and a.occupant("Bob", "role") == "participant",
          "A does not see B as member and participant")
    check(slixmpp.JID(str(a.occupant("Bob", "jid"))).bare == bare_b, "A, a moderator, does not see B's real JID")
    check(sorted(muc_b.get_roster(ROOM)) == ["Alice", "Bob"], f"B's roster {muc_b.get_roster(ROOM)}")
    print("PASS: members-only: refused before membership, entered after; each sees the other's presence")

    # 3. Group messages.
    sent = []
    for i in range(3):
        for client, nick in ((a, "Alice"), (b, "Bob")):
            body = f"{nick} says {i}"
            client.send_message(mto=ROOM, mbody=body, mtype="groupchat")
            sent.append((nick, body))
    for client in (a, b):
        await until(lambda: len(client.messages) >= 6, f"{client.boundjid} to get six messages")
    await asyncio.sleep(0.3)
    for client in (a, b):
        check(len(client.messages) == 6, f"{client.boundjid} got {client.messages}")
        for nick in ("Alice", "Bob"):
            got = [m for m in client.messages if m[0] == nick]
            check(got == [m for m in sent if m[0] == nick], f"{client.boundjid} got {nick}'s as {got}")
    print("PASS: six group messages, each received once by both, in each sender's order")

    # 4. Subject.
    before_a, before_b = len(a.subjects), len(b.subjects)
    muc_a.set_subject(ROOM, SUBJECT)
    for client, before in ((a, before_a), (b, before_b)):
        await until(lambda: len(client.subjects) > before, f"{client.boundjid} to see the subject")
        check(client.subjects[before:] == [("Alice", SUBJECT)], f"{client.boundjid} saw {client.subjects}")
    print("PASS: subject changed by the owner, seen by both from her occupant JID")

    # 5. Presence change and leaving.
    b.send_presence(pto=f"{ROOM}/Bob", pshow="away", pstatus="brb")
    await until(lambda: ("Bob", "away", "away") in a.presences, "A to see B away")
    muc_b.leave_muc(ROOM, "Bob")
    await until(lambda: ("Bob", "unavailable", "") in a.presences, "A to see B leave")
    check(muc_a.get_roster(ROOM) == ["Alice"], f"A's roster after B left {muc_a.get_roster(ROOM)}")
    print("PASS: A sees B go away and leave")

    for client in (a, b):
        client.disconnect()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main())
