#!/usr/bin/env python3
"""Write the committed seed corpus in fuzz/corpus/<target>/.

Run from anywhere: `python3 fuzz/gen_corpus.py`. The seeds are small and
meaningful: RFC 6455 §1.2/§4 handshakes, the §5.7 sample frames, fragmented
messages with interleaved control frames, close frames, and a few violations
the receiver must reject; RFC 7692 §7.2.3 payloads, zlib's output and bombs
for `inflate`; browsers' and Autobahn's offers and bad parameters for
`extensions`. Each target's input layout is described at the top
of its fuzz_targets/<target>.rs.
"""
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

RFC_KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # the §5.7 masking key
ZERO_KEY = bytes(4)  # payload stays readable, so mutations act on it

GOOD_REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
MINIMAL_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n"
    b"Connection: keep-alive, upgrade\r\n"
    b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
# The server's answer to GOOD_REQUEST (§1.3 accept value).
GOOD_RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n\r\n"
)


# RFC 7692 §7.2.3.1: "Hello" compressed, tail removed.
RFC_HELLO = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
HUB_JSON = (
    b'{"type":"msg","topic":"room.1","seq":42,"epoch":"9f3c1a2b4d5e","node":"local",'
    b'"from":"alice","ts":1763900000000,"data":{"text":"hello there, see you at noon"}}'
)


def raw_deflate(data, level=6):
    """A permessage-deflate payload: raw DEFLATE, sync-flushed, the
    0x00 0x00 0xff 0xff tail removed (RFC 7692 §7.2.1)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def frame(opcode, payload=b"", fin=True, key=ZERO_KEY, rsv=0, length=None):
    """One frame; `key=None` sends it unmasked, `length` overrides the
    declared payload length (for truncated or lying headers)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask = 0x80 if key is not None else 0
    if n < 126:
        head = bytes([b0, mask | n])
    elif n <= 0xFFFF:
        head = bytes([b0, mask | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mask | 127]) + struct.pack(">Q", n)
    if key is None:
        return head + payload
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + body


TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def close(code=None, reason=b"", **kw):
    body = b"" if code is None else struct.pack(">H", code) + reason
    return frame(CLOSE, body, **kw)


def conn(name, frames, flags=1, max_message=10, max_frame=10, reads=0, actions=7):
    """A `connection` seed: the 5-byte prefix, then the client's bytes.
    Indexes into SIZES: 4=125, 6=1000, 7=4096, 10=16 MiB, 11=u64::MAX."""
    prefix = bytes([flags, max_message, max_frame, reads, actions])
    return name, prefix + b"".join(frames)


def seeds():
    out = {}
    # RFC 6455 §5.7 samples.
    out["connection"] = [
        conn("rfc-hello-masked", [frame(TEXT, b"Hello", key=RFC_KEY)]),
        conn(
            "rfc-fragmented-with-ping",
            [
                GOOD_REQUEST,
                frame(TEXT, b"Hel", fin=False),
                frame(PING, b"Hello", key=RFC_KEY),
                frame(CONT, b"lo"),
                close(1000, b"bye"),
            ],
            flags=0,
            reads=7,
        ),
        conn("rfc-binary-256-chunks", [frame(BINARY, bytes(range(256)))], flags=3, reads=5),
        conn("binary-64k-header-too-big", [frame(BINARY, b"x" * 8, length=65536)], max_message=3),
        conn(
            "text-utf8-fragments",
            [
                frame(TEXT, "κόσ".encode(), fin=False),
                frame(CONT, "με 𝄞".encode()[:-1], fin=False),
                frame(CONT, "𝄞".encode()[-1:] + b" ok"),
            ],
            reads=3,
        ),
        conn(
            "text-invalid-utf8-chunks",
            [frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")],
            flags=3,
            reads=2,
        ),
        conn("text-truncated-codepoint", [frame(TEXT, b"ok\xe2\x82")]),
        conn("ping-125-pong-close-empty", [frame(PING, b"p" * 125), frame(PONG, b"u"), close()]),
        conn("ping-126-too-long", [frame(PING, b"p" * 126)]),
        conn("close-1005-forbidden", [close(1005)]),
        conn("close-one-byte", [frame(CLOSE, b"\x03")]),
        conn("close-reason-invalid-utf8", [close(1000, b"\xff")]),
        conn("close-4000-then-data", [close(4000, b"private"), frame(TEXT, b"after")]),
        conn("reserved-bits", [frame(TEXT, b"rsv", rsv=4)]),
        conn("reserved-opcode", [frame(0x3, b""), frame(0xB, b"")]),
        conn("unmasked-frame", [frame(TEXT, b"Hello", key=None)]),
        conn("fragmented-ping", [frame(PING, b"x", fin=False)]),
        conn("continuation-without-message", [frame(CONT, b"x")]),
        conn("new-message-inside-fragmented", [frame(TEXT, b"a", fin=False), frame(BINARY, b"b")]),
        conn("non-minimal-length", [bytes([0x82, 0xFE, 0x00, 0x05]) + ZERO_KEY + b"12345"]),
        conn("length-msb-set", [bytes([0x82, 0xFF, 0x80]) + bytes(7) + ZERO_KEY]),
        conn(
            "message-too-big-fragments",
            [frame(BINARY, b"1234", fin=False), frame(PING), frame(CONT, b"56789")],
            max_message=3,
            max_frame=6,
        ),
        conn(
            "empty-fragments-chunks",
            [frame(TEXT, b"", fin=False), frame(CONT, b"abc", fin=False), frame(CONT, b"")],
            flags=3,
        ),
        conn(
            "server-closes-first",
            [frame(PING, b"1"), frame(TEXT, b"x"), frame(PING, b"2"), close(1000)],
            flags=5,
            reads=1,
            actions=3,
        ),
        conn("byte-at-a-time", [frame(TEXT, "héllo".encode(), key=RFC_KEY), close(1001)], reads=64),
    ]

    # handshake: seed byte (read sizes, limits), then the bytes.
    out["handshake"] = [
        ("rfc-request", b"\x00" + GOOD_REQUEST),
        ("rfc-request-split", b"\x07" + GOOD_REQUEST + frame(TEXT, b"Hello", key=RFC_KEY)),
        ("minimal-request-bytewise", b"\x01" + MINIMAL_REQUEST),
        ("version-8-426", b"\x00" + GOOD_REQUEST.replace(b"Version: 13", b"Version: 8")),
        ("post-405", b"\x00" + GOOD_REQUEST.replace(b"GET", b"POST")),
        ("http10-400", b"\x00" + GOOD_REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0")),
        ("short-key-400", b"\x00" + GOOD_REQUEST.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"dGhlIHNhbXBsZQ==")),
        ("too-many-headers-431", b"\x40" + GOOD_REQUEST),
        ("head-over-256-431", b"\x80" + GOOD_REQUEST),
        ("rfc-response", b"\x00" + GOOD_RESPONSE),
        ("bad-header-400", b"\x00GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
    ]

    # unmask: key, phase, split count, payload.
    out["unmask"] = [
        ("rfc-hello", RFC_KEY + b"\x00\x00" + b"\x7f\x9f\x4d\x51\x58"),
        ("phase-3-split", RFC_KEY + b"\x03\x03" + bytes(range(100))),
        ("len-33-phase-1", b"\x01\x02\x03\x04\x01\x05" + bytes(range(7, 40))),
    ]

    # utf8: split count, text.
    out["utf8"] = [
        ("ascii-and-latin", b"\x05" + "Hello-µ@ßöäüàá-UTF-8!!".encode()),
        ("greek-clef-euro", b"\x07" + "κόσμε 𝄞 €".encode()),
        ("surrogate", b"\x03\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
        ("above-max", b"\x02\xf4\x90\x80\x80"),
        ("overlong", b"\x02abc\xc0\xaf\xe0\x80\xaf"),
        ("truncated", b"\x01ok\xe2\x82"),
        ("ascii-then-ff", b"\x04" + b"12345678901234567890\xff"),
    ]
    # inflate: mode (even: arbitrary payload; odd: round trip with settings),
    # limit index (0, 1, 5, 100, 1000, 4096, 64 KiB, 1 MiB), cut count,
    # payload. RFC 7692 §7.2.3 examples, zlib's own output, bombs, damage.
    out["inflate"] = [
        ("rfc-hello", b"\x00\x07\x00" + RFC_HELLO),
        ("rfc-hello-cut", b"\x00\x07\x03" + RFC_HELLO),
        ("rfc-hello-limit-5", b"\x00\x02\x01" + RFC_HELLO),
        ("rfc-hello-limit-1", b"\x00\x01\x00" + RFC_HELLO),
        ("rfc-second-hello-no-context", b"\x00\x07\x00" + bytes([0xF2, 0x00, 0x11, 0x00, 0x00])),
        ("rfc-stored-block", b"\x00\x07\x02" + bytes([0x00, 0x05, 0x00, 0xFA, 0xFF]) + b"Hello\x00"),
        ("rfc-bfinal", b"\x00\x07\x01" + bytes([0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00])),
        ("rfc-bfinal-then-block", b"\x00\x07\x02" + bytes([0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00]) + raw_deflate(b" world")),
        (
            "rfc-two-blocks",
            b"\x00\x07\x02"
            + bytes([0xF2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xCA, 0xC9, 0xC9, 0x07, 0x00]),
        ),
        ("json-dynamic-huffman", b"\x00\x06\x05" + raw_deflate(HUB_JSON * 4, level=9)),
        ("empty-message", b"\x00\x00\x00\x00"),
        ("bomb-1mib-limit-4096", b"\x00\x05\x00" + raw_deflate(bytes(1 << 20), level=9)),
        ("zeros-64k-at-limit", b"\x00\x06\x02" + raw_deflate(bytes(65536), level=9)),
        ("zeros-64k-plus-one", b"\x00\x06\x02" + raw_deflate(bytes(65537), level=9)),
        ("reserved-block-type", b"\x00\x07\x00\xff\xff\xff"),
        ("stored-len-mismatch", b"\x00\x07\x00\x00\x05\x00\x00\x00"),
        ("round-trip-json-window-8", b"\x01\x00\x03" + HUB_JSON),
        ("round-trip-json-context-15", b"\xff\x00\x05" + HUB_JSON * 3),
        ("round-trip-level-0", b"\x0d\x00\x02" + HUB_JSON),
        ("round-trip-binary", b"\xb3\x00\x07" + bytes(range(256)) * 2),
    ]

    # deflate_receive: flags (bit 0 chunks, bit 1 client context takeover,
    # bit 2 round trip, bits 3-5 windows 8+n), limit index (0, 1, 125,
    # 1000, 4096, 64 KiB, 1 MiB), read seed (0: one byte per read), then
    # the client's frames: compressed messages (RSV1, RFC 7692 §6), every
    # RSV misuse, corrupt data, bombs, invalid text after inflation.
    def takeover_pair(msg):
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        first = c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH)
        second = c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH)
        return first[:-4], second[:-4]

    def drx(name, frames, flags=0, limit=6, seed=7):
        return name, bytes([flags, limit, seed]) + b"".join(frames)

    json_1, json_2 = takeover_pair(HUB_JSON)
    utf8_bad = raw_deflate(b"ok \xff" + HUB_JSON * 8)
    out["deflate_receive"] = [
        drx("rfc-hello", [frame(TEXT, RFC_HELLO, rsv=4)], seed=0),
        drx("rfc-hello-fragmented", [frame(TEXT, RFC_HELLO[:3], fin=False, rsv=4), frame(CONT, RFC_HELLO[3:])]),
        drx(
            "ping-between-fragments",
            [frame(TEXT, RFC_HELLO[:2], fin=False, rsv=4), frame(PING, b"hb"), frame(CONT, b""), frame(CONT, RFC_HELLO[2:])],
            seed=3,
        ),
        drx("json-chunks", [frame(TEXT, raw_deflate(HUB_JSON * 4, level=9), rsv=4)], flags=1, seed=11),
        drx("takeover-two-messages", [frame(TEXT, json_1, rsv=4), frame(TEXT, json_2, rsv=4)], flags=2),
        drx("no-takeover-refers-back", [frame(TEXT, json_1, rsv=4), frame(TEXT, json_2, rsv=4)], flags=0),
        drx("plain-then-compressed", [frame(TEXT, b"plain"), frame(BINARY, raw_deflate(bytes(range(200))), rsv=4)]),
        drx("empty-compressed", [frame(BINARY, b"", rsv=4), frame(TEXT, b"\x00", rsv=4)]),
        drx("bomb-1mib-limit-4096", [frame(BINARY, raw_deflate(bytes(1 << 20), level=9), rsv=4)], limit=4),
        drx("bomb-fragmented-chunks", [frame(BINARY, raw_deflate(bytes(1 << 18), level=9), fin=False, rsv=4), frame(CONT, b"")], flags=1, limit=5),
        drx("at-limit-1000", [frame(TEXT, raw_deflate(b"a" * 1000), rsv=4), frame(TEXT, raw_deflate(b"a" * 1001), rsv=4)], limit=3),
        drx("text-invalid-after-inflate", [frame(TEXT, utf8_bad, rsv=4)], seed=5),
        drx("text-split-code-point", [frame(TEXT, raw_deflate("é".encode()[:1]), rsv=4)]),
        drx("corrupt-reserved-block", [frame(BINARY, b"\x07\x00", rsv=4)]),
        drx("corrupt-stored-length", [frame(BINARY, b"\x00\x05\x00\x00\x00", rsv=4)]),
        drx("corrupt-too-far-back", [frame(TEXT, bytes([0x42, 0x62, 0x02, 0x00]), rsv=4)]),
        drx("rsv1-continuation", [frame(TEXT, RFC_HELLO[:3], fin=False, rsv=4), frame(CONT, RFC_HELLO[3:], rsv=4)]),
        drx("rsv1-ping", [frame(PING, b"x", rsv=4)]),
        drx("rsv1-close", [close(1000, rsv=4)]),
        drx("rsv2-text", [frame(TEXT, b"x", rsv=2)]),
        drx("rsv3-binary", [frame(BINARY, b"x", rsv=1)]),
        drx("close-after-compressed", [frame(TEXT, RFC_HELLO, rsv=4), close(1000, b"bye"), frame(TEXT, RFC_HELLO, rsv=4)]),
        drx("round-trip-json", [HUB_JSON + b"\xff" + HUB_JSON * 2 + b"\xff\xff" + bytes(range(255))], flags=0x3C),
        drx("round-trip-takeover-window-8", [HUB_JSON * 3 + b"\xff" + HUB_JSON], flags=0x06),
        drx("round-trip-chunks-window-12", [b"\xff".join([HUB_JSON] * 4)], flags=0x25, seed=1),
    ]

    # extensions: server config byte, client config byte, header values
    # separated by \n. Browsers' offers, Autobahn's, every bad parameter,
    # and responses for the client role.
    pmd = b"permessage-deflate"
    out["extensions"] = [
        ("chrome-offer", b"\x00\x00" + pmd + b"; client_max_window_bits"),
        ("firefox-offer", b"\x03\x03" + pmd),
        ("context-takeover-both", b"\x03\x03" + pmd + b"; client_max_window_bits"),
        (
            "every-parameter",
            b"\x1c\x41" + pmd + b"; server_no_context_takeover; client_no_context_takeover; "
            b"server_max_window_bits=10; client_max_window_bits=12",
        ),
        ("server-window-8", b"\x00\x00" + pmd + b"; client_max_window_bits; server_max_window_bits=8"),
        (
            "autobahn-13-7",
            b"\x00\x00" + pmd + b"; client_no_context_takeover; client_max_window_bits; "
            b"server_no_context_takeover; server_max_window_bits=8, " + pmd
            + b"; client_no_context_takeover; client_max_window_bits; server_no_context_takeover, "
            + pmd + b"; client_no_context_takeover; client_max_window_bits",
        ),
        ("quoted-values", b"\x00\x00" + pmd + b'; server_max_window_bits="9"; client_max_window_bits="1\\0"'),
        ("several-fields", b"\x00\x00x-webkit-deflate-frame\n" + pmd + b"; foo, " + pmd + b"\n, ,"),
        ("duplicate-param", b"\x00\x00" + pmd + b"; server_no_context_takeover; server_no_context_takeover"),
        ("value-on-flag", b"\x00\x00" + pmd + b"; client_no_context_takeover=1"),
        ("bits-out-of-range", b"\x00\x00" + pmd + b"; server_max_window_bits=16, " + pmd + b"; client_max_window_bits=08"),
        ("bits-missing-value", b"\x00\x00" + pmd + b"; server_max_window_bits"),
        ("unterminated-quote", b"\x00\x00" + pmd + b'; server_max_window_bits="10'),
        ("quoted-not-token", b"\x00\x00" + pmd + b'; server_max_window_bits="1 0"'),
        (
            "response-full",
            b"\x00\x60" + pmd + b"; server_no_context_takeover; client_no_context_takeover; "
            b"server_max_window_bits=9; client_max_window_bits=8",
        ),
        ("response-two-extensions", b"\x00\x00" + pmd + b", " + pmd),
        ("response-client-bits-no-value", b"\x00\x00" + pmd + b"; client_max_window_bits"),
    ]
    return out


def main():
    for target, items in seeds().items():
        d = os.path.join(CORPUS, target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in items:
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
