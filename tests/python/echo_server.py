"""The Python `websockets` echo server, for the loop's client
(examples/client_echo_check.rs) to connect to over ws:// and wss://.

Run by tests/python/run.sh: python echo_server.py CERT.pem KEY.pem

Serves on two free 127.0.0.1 ports, plain and TLS (the certificate run.sh
made with openssl), permessage-deflate on (the library's default). Each
connection first gets the extensions the server agreed to (the response's
Sec-WebSocket-Extensions, "" for none) as a text message, then every
message echoed. Prints "ws PORT" and "wss PORT" once both listen; stops
itself after LIFETIME seconds in case nobody stops it.
"""

import ssl
import sys
import threading

from websockets.sync.server import serve

LIFETIME = 120
MAX_SIZE = 16 * 1024 * 1024


def echo(ws):
    ws.send(ws.response.headers.get("Sec-WebSocket-Extensions", ""))
    for msg in ws:
        ws.send(msg)


def main():
    cert, key = sys.argv[1], sys.argv[2]
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    plain = serve(echo, "127.0.0.1", 0, max_size=MAX_SIZE)
    secure = serve(echo, "127.0.0.1", 0, ssl=tls, max_size=MAX_SIZE)
    for server in (plain, secure):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ws %d" % plain.socket.getsockname()[1])
    print("wss %d" % secure.socket.getsockname()[1], flush=True)
    threading.Event().wait(LIFETIME)
    plain.shutdown()
    secure.shutdown()


if __name__ == "__main__":
    main()
