"""Shared by the slixmpp interop scripts: logging a client in and waiting for a condition."""

import asyncio


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
