"""The Python `websockets` client against the hub, compression on (RFC 7692).

Run by tests/python/run.sh, which starts `wsmio serve` and passes its base
URL: python deflate_client.py http://127.0.0.1:PORT

Two clients subscribe to one topic: one with permessage-deflate (the
library's default), one without. A publish larger than the hub's
--deflate-threshold must reach both intact; /metrics must show it went out
compressed once and shared. Every wait is bounded (TIMEOUT seconds).
"""

import json
import re
import sys
import urllib.request

from websockets.sync.client import connect

TIMEOUT = 5


def recv_until(ws, pred):
    """The first JSON message for which pred is true (others skipped)."""
    while True:
        msg = json.loads(ws.recv(timeout=TIMEOUT))
        if pred(msg):
            return msg


def subscribe(ws, topic):
    ws.send(json.dumps({"op": "sub", "topic": topic, "id": 1}))
    recv_until(ws, lambda m: m.get("type") == "ack" and m.get("id") == 1)


def metric(body, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), body, re.M)
    if not m:
        sys.exit("no %s in /metrics" % name)
    return int(m.group(1))


def main():
    base = sys.argv[1]
    url = base.replace("http://", "ws://") + "/ws"
    with connect(url, open_timeout=TIMEOUT) as z, connect(
        url, compression=None, open_timeout=TIMEOUT
    ) as plain:
        ext = z.response.headers.get("Sec-WebSocket-Extensions", "")
        if not ext.startswith("permessage-deflate"):
            sys.exit("the hub did not accept permessage-deflate: %r" % ext)
        if plain.response.headers.get("Sec-WebSocket-Extensions"):
            sys.exit("extension answered to a client that offered none")
        for ws in (z, plain):
            subscribe(ws, "py")
        text = "the quick brown fox jumps over the lazy dog " * 50
        z.send(json.dumps({"op": "pub", "topic": "py", "data": {"text": text}, "id": 2}))
        for ws in (z, plain):
            got = recv_until(ws, lambda m: m.get("type") == "msg")
            if got["data"]["text"] != text:
                sys.exit("delivery changed on the way")
        # A compressed publish from the client inflates on the hub too (it
        # came back above); the small welcome/acks went plain.
    with urllib.request.urlopen(base + "/metrics", timeout=TIMEOUT) as r:
        body = r.read().decode()
    shared = metric(body, "wsmio_deflate_sent_shared_total")
    before = metric(body, "wsmio_deflate_bytes_before_total")
    after = metric(body, "wsmio_deflate_bytes_after_total")
    if shared < 1 or not after < before:
        sys.exit("no shared compressed delivery: shared=%d before=%d after=%d" % (shared, before, after))
    print("python websockets: permessage-deflate ok (%r; %d -> %d bytes)" % (ext, before, after))


if __name__ == "__main__":
    main()
