#!/usr/bin/python3
"""A WebSocket client we did not write (Python's websockets, Debian's
python3-websockets), driven line by line by tests/system/test_websocket.c.

    ws_relay.py URL [ORIGIN [CAFILE [CERT]]]

ORIGIN "-" sends none; with CAFILE, a wss:// URL's certificate is checked
against it (and the host name); with CERT, a file stem, the relay presents
the client certificate CERT.pem with its key CERT.key (mutual TLS).

It connects offering the subprotocol switchboard.v1 and says on stdout:
"open SUBPROTOCOL", or "refused STATUS" when the upgrade is answered with
an HTTP status, or "failed WHY" when it cannot connect (a certificate not
trusted); then "msg HEX" for each binary message, "text" for a text
one, "pong" when a ping is answered, and "closed CODE REASON" at the end.
Commands on stdin: "send HEX" (one binary message), "ping HEX",
"close CODE", "quit". Every wait has a limit: the test's watchdog too."""
import asyncio
import ssl
import sys

import websockets


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(url, origin, cafile, cert):
    tls = ssl.create_default_context(cafile=cafile) if cafile else None
    if cert:
        tls.load_cert_chain(cert + ".pem", cert + ".key")
    try:
        ws = await asyncio.wait_for(
            websockets.connect(url, subprotocols=["switchboard.v1"], origin=origin,
                               max_size=None, ping_interval=None, open_timeout=10,
                               ssl=tls),
            15)
    except websockets.exceptions.InvalidStatusCode as e:
        say(f"refused {e.status_code}")
        return
    except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake) as e:
        say(f"failed {type(e).__name__}")  # a certificate not trusted, ...
        return
    say(f"open {ws.subprotocol}")

    async def receive():
        try:
            async for m in ws:
                say("msg " + m.hex() if isinstance(m, bytes) else "text")
        except websockets.ConnectionClosed:
            pass
        say(f"closed {ws.close_code} {ws.close_reason}")

    task = asyncio.create_task(receive())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd, _, arg = line.decode().strip().partition(" ")
        try:
            if cmd == "send":
                await ws.send(bytes.fromhex(arg))
            elif cmd == "ping":
                pong = await ws.ping(bytes.fromhex(arg))
                await asyncio.wait_for(pong, 10)
                say("pong")
            elif cmd == "close":
                await asyncio.wait_for(ws.close(int(arg)), 10)
            elif cmd == "quit":
                break
        except (websockets.ConnectionClosed, asyncio.TimeoutError) as e:
            say(f"error {type(e).__name__}")
    await asyncio.wait_for(ws.close(), 10)
    await asyncio.wait_for(task, 10)


if __name__ == "__main__":
    origin = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
    asyncio.run(main(sys.argv[1], origin, sys.argv[3] if len(sys.argv) > 3 else None,
                     sys.argv[4] if len(sys.argv) > 4 else None))
