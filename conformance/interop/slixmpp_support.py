"""Shared by the slixmpp interop scripts: the client they start from, logging it in, and
waiting for a condition."""

import asyncio
import ssl

import slixmpp


class InteropClient(slixmpp.ClientXMPP):
    """A client with the given plugins that trusts the test server's self-signed certificate,
    sends its initial presence once the session starts and then sets `online`."""

    def __init__(self, jid, password, plugins):
        super().__init__(jid, password)
        for plugin in plugins:
            self.register_plugin(plugin)
        self.online = asyncio.Event()
        self.add_event_handler("session_start", self.start)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.enable_plaintext = False

    async def start(self, _):
        self.send_presence()
        self.online.set()


async def login(client_class, host, port, jid, password):
    """Connects a client of `client_class` (a slixmpp.ClientXMPP) and waits until it is online."""
    client = client_class(jid, password)
    client.connect(host=host, port=int(port))
    try:
        await asyncio.wait_for(client.online.wait(), 20)
    except asyncio.TimeoutError:
        raise SystemExit(f"FAIL: {jid} could not log in")
    return client


async def until(condition, what, timeout=20):
    """Waits until `condition()` holds; fails the script after `timeout` seconds."""
    for _ in range(int(timeout * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"FAIL: timed out waiting for {what}")
