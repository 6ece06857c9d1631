#!/usr/bin/python3
"""Golden vectors for the Switchboard wire protocol, checked by python3-msgpack.

Python's msgpack (not our code) builds each frame from plain values; our
decoder must read every field back, and our encoder must produce the same
bytes. Python then decodes our bytes. Invalid frames must be refused with the
documented fault. Finally the annotated hex dumps in docs/protocol.md must be
exactly these vectors, so the document cannot drift from the code.

usage: check_golden.py SB_GOLDEN PROTOCOL_MD     run the checks
       check_golden.py --dump                    print the dumps for the docs
       check_golden.py --seeds DIR               write fuzz seeds (tests/fuzz/corpus)
       check_golden.py --router-seeds DIR        write session seeds (tests/fuzz/router-corpus)
       check_golden.py --schema-seeds DIR        write schema seeds (tests/fuzz/schema-corpus)
"""
import json
import re
import struct
import subprocess
import sys

import msgpack


class U64:
    """A uint64 that the protocol fixes at full width (0xcf + 8 bytes)."""

    def __init__(self, v):
        self.v = v


class U32:
    """A uint32 that the protocol fixes at full width (0xce + 4 bytes)."""

    def __init__(self, v):
        self.v = v


KINDS = {
    1: "HELLO", 2: "CHALLENGE", 3: "AUTH", 4: "WELCOME", 5: "REGISTER",
    6: "UNREGISTER", 7: "ACK", 8: "SEND", 9: "REQUEST", 10: "REPLY",
    11: "ERROR", 12: "CANCEL", 13: "SUBSCRIBE", 14: "PRESENCE", 15: "PING",
    16: "PONG", 17: "GOODBYE",
}

# Field names in wire order after kind, flags, id; the payload comes last.
FIELDS = {
    1: ["version", "peer", "role"],
    2: ["nonce", "mech"],
    3: ["nonce", "proof"],
    4: ["version", "peer", "peer_id", "max_frame"],
    5: ["name"], 6: ["name"], 7: [],
    8: ["name", "to", "from"],
    9: ["name", "to", "from", "timeout_ms"],
    10: ["outcome", "peer"],
    11: ["code", "text", "peer"],
    12: [], 13: ["topic"],
    14: ["event", "peer", "peer_id"],
    15: [], 16: [],
    17: ["reason", "deadline_ms"],
}

# The element a flag adds before the payload: ERROR's APP (0x04), SEND's
# and REQUEST's HEADERS (0x02).
OPTIONAL = {11: ["app_code"], 8: ["headers"], 9: ["headers"]}

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

NONCE = bytes(range(1, 33))

# The argument schema docs/protocol.md shows (and its examples are checked
# against): "Argument schemas".
USER_SCHEMA = {"keys": {"email": {"type": "str", "max": 255},
                        "age": {"type": "uint", "max": 150},
                        "nick": {"type": ["str", "nil"], "min": 1, "max": 8},
                        "tags": {"type": "array", "max": 3}},
               "required": ["email"], "additional": False}

# One vector per kind (the ones the docs show), then variants.
VECTORS = [
    ("hello", [1, 0, U64(0), 1, "billing-1", "service", {"lib": "sb-c 0.1"}]),
    ("challenge", [2, 0, U64(0), NONCE, "hmac-sha256", None]),
    ("auth", [3, 0, U64(0), NONCE[:16], NONCE, None]),
    ("welcome", [4, 0, U64(0), 1, "billing-1", 7, 1048576, {"shard": 0}]),
    ("register", [5, 1, U64(1), "user.create", {"required": ["email"]}]),
    ("unregister", [6, 0, U64(2), "user.create", None]),
    ("ack", [7, 0, U64(1), None]),
    ("send", [8, 0, U64(0), "audit.log", None, U32(0), {"event": "login"}]),
    ("request", [9, 0, U64(7), "transfer", None, U32(0), U32(5000),
                 {"amount": 100, "to": "bob"}]),
    ("reply", [10, 0, U64(7), "insufficient funds", None, {"balance": 20}]),
    ("error", [11, 0, U64(7), 2, "no reply within 5000 ms", None, None]),
    ("cancel", [12, 0, U64(7), None]),
    ("subscribe", [13, 0, U64(3), "presence", None]),
    ("presence", [14, 0, U64(0), 1, "A001", 12, {"role": "service"}]),
    ("ping", [15, 0, U64(9), None]),
    ("pong", [16, 0, U64(9), None]),
    ("goodbye", [17, 0, U64(0), "router draining", 30000, None]),
    # Variants: catch-all, forwarded request, progress, chunk, broadcast
    # results, fatal error, peer-targeted send, unicode, big ids and payloads.
    ("register-catchall", [5, 0, U64(4), None, None]),
    ("request-forwarded", [9, 0, U64(2**64 - 1), "health", "agent-7",
                           U32(4294967295), U32(250), []]),
    ("reply-progress", [10, 1, U64(8), "file.copying", None, {"percent": 40}]),
    ("reply-chunk", [10, 3, U64(8), "file.read-chunk", None, b"\x00" * 300]),
    ("reply-broadcast", [10, 1, U64(8), "ok", "agent-7", True]),
    ("error-fatal", [11, 2, U64(0), 12, "frame too large (2000000 bytes, limit 1048576)",
                     None, None]),
    ("error-peer", [11, 1, U64(8), 5, "", "agent-7", None]),
    ("send-to", [8, 0, U64(0), "cache.flush", "A002", U32(3), -1]),
    # Names that survive a lost connection: WELCOME's resume token, and the
    # HELLO that shows it to take the name back.
    ("welcome-resume", [4, 0, U64(0), 1, "A001", 7, 1048576,
                        {"shard": 0, "resume": bytes(range(0xa0, 0xb0))}]),
    ("hello-resume", [1, 0, U64(0), 1, "A001", "client",
                      {"lib": "sb-c 0.2", "resume": bytes(range(0xa0, 0xb0))}]),
    # A broadcast to peers: BROADCAST with `to` as the selector.
    ("request-peers", [9, 1, U64(9), "health", "agent-*", U32(0), U32(2000), None]),
    ("unicode", [9, 0, U64(1), "caf\u00e9.\U0001F4E6", None, U32(0), U32(0),
                 {"k\u00e9y": 1.5, "list": [1, -2, None, False]}]),
    ("big-payload", [9, 0, U64(1), "blob.put", None, U32(0), U32(0), b"x" * 70000]),
    ("register-schema", [5, 0, U64(5), "user.create", USER_SCHEMA]),
    # The protocol's edges (docs/protocol.md): what the router answers to a
    # REQUEST with id 0 and to an unknown kind, a peer's own GOODBYE, and a
    # handler's final REPLY with CHUNK (forwarded without it).
    ("error-request-id-0", [11, 0, U64(0), 9,
                            "REQUEST id 0 is reserved: an ERROR with id 0 is about the connection",
                            None, None]),
    ("error-unknown-kind", [11, 0, U64(77), 15, "unknown message kind 30", None, None]),
    ("goodbye-peer", [17, 0, U64(0), "shutting down", 10000, None]),
    ("reply-final-chunk", [10, 2, U64(8), "file.read-done", None, None]),
    # A bearer token in HELLO's payload (docs/protocol.md, "A bearer token
    # in HELLO"): HS256 over {"sub":"ada","exp":1900000000}.
    ("hello-token", [1, 0, U64(0), 1, "tunnel-1", "service",
                     {"lib": "sb-c 0.2",
                      "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZGEiLCJleHAiOjE5MDAwMDAwMDB9.ddF9DeTc8YJMUotw8LI5F6XKpw5VxIy0fW0XhqoyM5w"}]),
    # An identity event (docs/protocol.md, "Identity (4)") for a peer that
    # authenticated with a token: its claims, whole, under "claims".
    # An application error (docs/protocol.md, "Application errors"): code
    # 19, flag APP and the application's code after peer; details as payload.
    ("error-app", [11, 4, U64(7), 19, "the card was declined", None, "CARD_DECLINED",
                   {"limit": 100}]),
    ("error-app-broadcast", [11, 5, U64(8), 19, "no such agent", "tunnel-2", "MYERRCODE",
                             None]),
    # Headers (docs/protocol.md, "Headers"): flag HEADERS and a map of
    # str -> str after the fixed-offset fields, before the payload.
    ("request-headers", [9, 2, U64(7), "transfer", None, U32(0), U32(5000),
                         {"traceparent": TRACEPARENT, "tenant": "acme"}, {"amount": 10}]),
    ("send-headers-broadcast", [8, 3, U64(0), "audit.log", None, U32(0),
                                {"device": "kitchen sensor"}, None]),
    ("presence-identity", [14, 0, U64(0), 4, "A002", 13,
                           {"role": "client", "subject": "ada",
                            "claims": {"sub": "ada", "exp": 1900000000, "tenant": "acme"}}]),
]

# Frames python builds that we must refuse: (name, elements, code, fault, field).
INVALID = [
    # python's natural (minimal) int width for an id: cannot be patched in place
    ("id-minimal-width", [9, 0, 9, "transfer", None, U32(0), U32(0), None], "EBADFRAME", "fixed-width integer in another width", 2),
    ("timeout-minimal-width", [9, 0, U64(1), "x", None, U32(0), 5000, None],
     "EBADFRAME", "fixed-width integer in another width", 6),
    ("name-too-long", [9, 0, U64(1), "n" * 256, None, U32(0), U32(0), None],
     "ETOOLARGE", "field too long", 3),
    ("name-space", [8, 0, U64(1), "user create", None, U32(0), None],
     "EBADFRAME", "invalid characters", 3),
    ("name-is-int", [8, 0, U64(1), 5, None, U32(0), None], "EBADFRAME", "wrong field type", 3),
    ("name-is-map", [8, 0, U64(1), {"a": 1}, None, U32(0), None], "EBADFRAME", "wrong field type", 3),
    ("name-is-bin", [8, 0, U64(1), b"bin", None, U32(0), None], "EBADFRAME", "wrong field type", 3),
    ("unknown-kind", [30, 0, U64(1), None], "EUNSUPPORTED", "unknown message kind", 0),
    ("kind-zero", [0, 0, U64(1), None], "EUNSUPPORTED", "unknown message kind", 0),
    ("arity", [12, 0, U64(1), None, None], "EBADFRAME", "wrong number of fields", 0),
    ("undefined-flag", [12, 1, U64(1), None], "EBADFRAME", "undefined flag bits", 1),
    ("error-code-zero", [11, 0, U64(1), 0, "x", None, None], "EBADFRAME", "value out of range", 3),
    # An application code and code 19 go together: neither comes alone, so
    # no router code can be taken for an application's.
    ("error-app-without-code", [11, 4, U64(1), 2, "x", None, "MYERR", None],
     "EBADFRAME", "code 19 (application error) and flag APP go together", 3),
    ("error-code-19-without-app", [11, 0, U64(1), 19, "x", None, None],
     "EBADFRAME", "code 19 (application error) and flag APP go together", 3),
    ("error-app-missing", [11, 4, U64(1), 19, "x", None, None],
     "EBADFRAME", "wrong number of fields", 0),
    ("error-app-space", [11, 4, U64(1), 19, "x", None, "MY ERR", None],
     "EBADFRAME", "invalid characters", 6),
    ("error-app-nil", [11, 4, U64(1), 19, "x", None, None, None],
     "EBADFRAME", "wrong field type", 6),
    ("error-app-too-long", [11, 4, U64(1), 19, "x", None, "E" * 65, None],
     "ETOOLARGE", "field too long", 6),
    # Headers: 1-16 entries, keys as names 1-64 bytes, values as labels
    # 0-256 bytes, 1 KiB in all; the element is there exactly with the flag.
    ("headers-missing", [9, 2, U64(1), "x", None, U32(0), U32(0), None],
     "EBADFRAME", "wrong number of fields", 0),
    ("headers-empty", [9, 2, U64(1), "x", None, U32(0), U32(0), {}, None],
     "EBADFRAME", "field too short", 7),
    ("headers-nil", [8, 2, U64(0), "x", None, U32(0), None, None],
     "EBADFRAME", "wrong field type", 6),
    ("headers-too-many", [9, 2, U64(1), "x", None, U32(0), U32(0),
                          {"k%d" % i: "" for i in range(17)}, None],
     "ETOOLARGE", "field too long", 7),
    ("headers-key-space", [9, 2, U64(1), "x", None, U32(0), U32(0), {"a b": "1"}, None],
     "EBADFRAME", "invalid characters", 7),
    ("headers-value-int", [9, 2, U64(1), "x", None, U32(0), U32(0), {"a": 1}, None],
     "EBADFRAME", "wrong field type", 7),
    ("headers-value-too-long", [9, 2, U64(1), "x", None, U32(0), U32(0), {"a": "v" * 257},
                                None], "ETOOLARGE", "field too long", 7),
    ("headers-over-1k", [9, 2, U64(1), "x", None, U32(0), U32(0),
                         {"k%d" % i: "v" * 256 for i in range(4)}, None],
     "ETOOLARGE", "field too long", 7),
    ("negative-version", [1, 0, U64(0), -1, None, "client", None], "EBADFRAME", "wrong field type", 3),
    ("payload-two-values", None, "EBADFRAME", "payload is not one MessagePack value", 3),
]


def pack_elem(p, e):
    if isinstance(e, U64):
        return b"\xcf" + struct.pack(">Q", e.v)
    if isinstance(e, U32):
        return b"\xce" + struct.pack(">I", e.v)
    return p.pack(e)


def frame(elems):
    p = msgpack.Packer(use_bin_type=True)
    body = p.pack_array_header(len(elems)) + b"".join(pack_elem(p, e) for e in elems)
    return struct.pack(">I", len(body)) + body


def plain(e):
    """What a decoder should report for an element."""
    if isinstance(e, (U64, U32)):
        return e.v
    if isinstance(e, bytes):
        return {"bin": e.hex()}
    return e


def decoded(e):
    """What python3-msgpack returns for an element."""
    return e.v if isinstance(e, (U64, U32)) else e


def invalid_frame(name, elems):
    if name == "payload-two-values":  # PING whose payload is two values
        f = frame([15, 0, U64(1), None])
        body = f[4:] + b"\xc0"
        return struct.pack(">I", len(body)) + body
    return frame(elems)


def run_decoder(tool, frames):
    out = subprocess.run([tool, "decode"], input="".join(f.hex() + "\n" for f in frames),
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


# ---- annotated dumps for docs/protocol.md ----------------------------------

def describe(kind, idx, e, n):
    if idx == 0:
        return "kind %s" % KINDS.get(kind, "?")
    if idx == 1:
        return "flags"
    if idx == 2:
        return "id %d (uint64, fixed width)" % e.v
    if idx == n - 1:
        return "payload " + short(e)
    name = (FIELDS[kind] + OPTIONAL.get(kind, []))[idx - 3]
    if isinstance(e, U32):
        return "%s %d (uint32, fixed width)" % (name, e.v)
    return "%s %s" % (name, short(e))


def short(e):
    if e is None:
        return "nil"
    if isinstance(e, bytes):
        return "bin %d bytes" % len(e)
    if isinstance(e, str):
        return json.dumps(e, ensure_ascii=False)
    return json.dumps(e, ensure_ascii=False)


def dump(elems):
    p = msgpack.Packer(use_bin_type=True)
    body_len = len(frame(elems)) - 4
    rows = [(struct.pack(">I", body_len), "length %d" % body_len),
            (p.pack_array_header(len(elems)), "fixarray, %d elements" % len(elems))]
    kind = elems[0]
    for i, e in enumerate(elems):
        rows.append((pack_elem(p, e), describe(kind, i, e, len(elems))))
    lines = []
    for raw, note in rows:
        chunks = [raw[i:i + 12] for i in range(0, len(raw), 12)] or [b""]
        for j, c in enumerate(chunks):
            hexs = " ".join("%02x" % b for b in c)
            lines.append(("%-36s  %s" % (hexs, note)) if j == 0 else hexs)
    return "\n".join(lines)


def dumps_for_docs():
    out = []
    for name, elems in VECTORS[:len(KINDS)]:
        out.append("<!-- vector: %s -->\n```text\n%s\n```\n" % (name, dump(elems)))
    return "\n".join(out)


def doc_vectors(path):
    """{name: bytes} for every annotated dump in the document."""
    text = open(path, encoding="utf-8").read()
    found = {}
    for m in re.finditer(r"<!-- vector: ([\w-]+) -->\n```text\n(.*?)\n```", text, re.S):
        data = bytearray()
        for line in m.group(2).splitlines():
            hexpart = line.split("  ")[0]
            data += bytes.fromhex(hexpart)
        found[m.group(1)] = bytes(data)
    return found


def doc_table(path, marker):
    """The rows of the table after <!-- MARKER --> as (json, answer) pairs,
    backticks removed."""
    lines = open(path, encoding="utf-8").read().split("<!-- %s -->\n" % marker, 1)
    if len(lines) < 2:
        return []
    rows = []
    for line in lines[1].splitlines():
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("`") for c in line.strip("|").split(" | ")]
        if cells[0].startswith("---") or cells[0].startswith("arguments") \
                or cells[0].startswith("schema ("):
            continue
        rows.append((cells[0], cells[1]))
    return rows


def check_schemas(tool, doc, fail):
    """The schema tables in the document are what our checker answers: each
    row's arguments against USER_SCHEMA, each refused schema's text."""
    schema_hex = msgpack.packb(USER_SCHEMA, use_bin_type=True).hex()
    args = doc_table(doc, "schema: arguments")
    refusals = doc_table(doc, "schema: refusals")
    if len(args) < 8 or len(refusals) < 4:
        fail("docs/protocol.md: the schema example tables are missing or short")
    lines = ["%s %s" % (schema_hex, msgpack.packb(json.loads(a), use_bin_type=True).hex())
             for a, _ in args]
    lines += ["%s c0" % msgpack.packb(json.loads(sc), use_bin_type=True).hex()
              for sc, _ in refusals]
    out = subprocess.run([tool, "schema"], input="".join(l + "\n" for l in lines),
                         capture_output=True, text=True, check=True).stdout
    results = [json.loads(line) for line in out.splitlines()]
    for (a, want), r in zip(args, results[:len(args)]):
        got = "accepted" if r["compiled"] and r["why"] == "" else r["why"]
        if got != want:
            fail("schema example %s: documented %r, the checker says %r" % (a, want, got))
    for (sc, want), r in zip(refusals, results[len(args):]):
        if r["compiled"] or r["why"] != want:
            fail("schema %s: documented %r, the compiler says %r" % (sc, want, r))
    print("%d schema examples and %d refused schemas in docs/protocol.md match the checker"
          % (len(args), len(refusals)))
    check_json_schemas(tool, doc, fail)


def doc_json_after(path, marker):
    """The JSON code block after <!-- MARKER -->, parsed (None if absent)."""
    parts = open(path, encoding="utf-8").read().split("<!-- %s -->\n" % marker, 1)
    if len(parts) < 2 or not parts[1].startswith("```json\n"):
        return None
    return json.loads(parts[1][len("```json\n"):].split("```", 1)[0])


def check_json_schemas(tool, doc, fail):
    """The JSON Schema example's tables: each row's arguments against the
    example schema as the document shows it, each refused schema's text."""
    schema = doc_json_after(doc, "jschema: example")
    args = doc_table(doc, "jschema: arguments")
    refusals = doc_table(doc, "jschema: refusals")
    if schema is None or len(args) < 8 or len(refusals) < 4:
        fail("docs/protocol.md: the JSON Schema example or its tables are missing or short")
        return
    schema_hex = msgpack.packb(schema, use_bin_type=True).hex()
    lines = ["%s %s" % (schema_hex, msgpack.packb(json.loads(a), use_bin_type=True).hex())
             for a, _ in args]
    lines += ["%s c0" % msgpack.packb(json.loads(sc), use_bin_type=True).hex()
              for sc, _ in refusals]
    out = subprocess.run([tool, "schema"], input="".join(l + "\n" for l in lines),
                         capture_output=True, text=True, check=True).stdout
    results = [json.loads(line) for line in out.splitlines()]
    for (a, want), r in zip(args, results[:len(args)]):
        got = "accepted" if r["compiled"] and r["why"] == "" else r["why"]
        if got != want:
            fail("JSON Schema example %s: documented %r, the checker says %r" % (a, want, got))
    for (sc, want), r in zip(refusals, results[len(args):]):
        if r["compiled"] or r["why"] != want:
            fail("JSON Schema %s: documented %r, the compiler says %r" % (sc, want, r))
    print("%d JSON Schema examples and %d refused JSON Schemas in docs/protocol.md match "
          "the checker" % (len(args), len(refusals)))


# ---- checks ------------------------------------------------------------------

def write_seeds(directory):
    """Fuzz seeds: two control bytes (piece size, splitter limit; see
    tests/fuzz/fuzz_frame.c) then frames: each vector alone, every invalid
    frame, and one stream of all small vectors back to back."""
    import os
    small = [frame(e) for n, e in VECTORS if n != "big-payload"]
    seeds = {"v-" + n: frame(e) for n, e in VECTORS if n != "big-payload"}
    seeds.update({"bad-" + n: invalid_frame(n, e) for n, e, _, _, _ in INVALID})
    seeds["stream"] = b"".join(small)
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(bytes([7, 0]) + data)


def write_router_seeds(directory):
    """Seeds for tests/fuzz/fuzz_router.c: whole sessions one connection
    sends to a router where a service answers "fz.echo" and "fz.stream"."""
    import os
    def hello(role, peer=None):
        return frame([1, 0, U64(0), 1, peer, role, None])
    def request(i, name, timeout=0, payload=None):
        return frame([9, 0, U64(i), name, None, U32(0), U32(timeout), payload])
    def auth(nonce, proof):
        return frame([3, 0, U64(0), nonce, proof, None])
    reg = frame([5, 0, U64(1), "fz.self", None])
    sessions = {
        "echo": hello("client") + b"".join(request(i, "fz.echo", 0, {"n": i})
                                           for i in range(1, 4))
        + frame([15, 0, U64(9), None]),
        "stream-cancel": hello("client") + request(4, "fz.stream")
        + frame([12, 0, U64(4), None]),
        "self": hello("service", "fz-self") + reg + request(2, "fz.self", 1000, [1, 2])
        + frame([6, 0, U64(5), "fz.self", None]) + request(3, "fz.self"),
        "self-timeout": hello("service") + reg + request(2, "fz.self", 1),
        "send": hello("client") + frame([8, 0, U64(0), "fz.echo", None, U32(0), {"e": 1}])
        + frame([8, 0, U64(0), "nobody", None, U32(0), None]),
        "no-hello": request(1, "fz.echo"),
        "double-hello": hello("client") + hello("client"),
        "garbage": hello("client") + b"\x00\x00\x00\x05\xff\xff\xff\xff\xff",
        "goodbye": hello("client") + request(1, "fz.stream")
        + frame([17, 0, U64(0), "bye", 0, None]),
        "reply-unknown": hello("service") + frame([10, 0, U64(77), "done", None, None])
        + frame([11, 0, U64(78), 2, "x", None, None]),
        "to": hello("service", "fz-to")
        + frame([9, 0, U64(1), "fz.any", "fz-to", U32(0), U32(500), None])
        + frame([9, 0, U64(2), "fz.any", "ghost", U32(0), U32(0), None])
        + frame([8, 0, U64(0), "fz.any", "fz-to", U32(0), None])
        + frame([9, 1, U64(3), "fz.echo", "fz-to", U32(0), U32(0), None]),
        "broadcast": hello("service", "fz-bc") + frame([5, 0, U64(1), "fz.echo", None])
        + frame([9, 1, U64(2), "fz.echo", None, U32(0), U32(300), {"b": 1}])
        + frame([8, 1, U64(0), "fz.echo", None, U32(0), None])
        + frame([9, 1, U64(3), "fz.stream", None, U32(0), U32(0), None])
        + frame([12, 0, U64(3), None])
        + frame([9, 1, U64(4), "nobody", None, U32(0), U32(0), None]),
        "presence": hello("client") + frame([13, 0, U64(1), "presence", None])
        + frame([13, 0, U64(2), "weather", None]) + frame([13, 1, U64(3), "presence", None]),
        "schema": hello("service", "fz-schema")
        + frame([5, 0, U64(1), "fz.self", {"keys": {"n": {"type": "uint", "max": 3}},
                                          "required": ["n"], "additional": False}])
        + request(2, "fz.self", 1000, {"n": 1}) + request(3, "fz.self", 0, {"n": 9})
        + request(4, "fz.self", 0, {"x": 1}) + request(5, "fz.self", 0, [1])
        + frame([8, 0, U64(0), "fz.self", None, U32(0), {"n": "x"}])
        + frame([5, 1, U64(6), "fz.inside", {"required": "n"}])
        + frame([5, 1, U64(7), "fz.inside", None]) + request(8, "fz.inside", 0, None),
        # For the router with secrets (the harness sends every input to both):
        # a wrong AUTH, AUTH out of place, a malformed one, and work before AUTH.
        "auth-wrong": hello("client", "fz-a") + auth(bytes(16), bytes(32)),
        "auth-first": auth(bytes(range(16)), bytes(32)) + hello("client"),
        "auth-twice": hello("service") + auth(bytes(16), bytes(32))
        + auth(bytes(16), bytes(32)),
        "auth-short-proof": hello("client") + auth(bytes(64), bytes(16)),
        "auth-short-nonce": hello("client") + auth(bytes(8), bytes(32)),  # under 16
        "auth-skipped": hello("service") + reg + request(2, "fz.echo"),
        # Bearer tokens in HELLO's payload: a forged one, one that is not a
        # string, and one after nested values the router must skip whole.
        "hello-token": frame([1, 0, U64(0), 1, "fz-t", "service",
                              {"lib": "x", "token": "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}])
        + request(2, "fz.echo"),
        "hello-token-int": frame([1, 0, U64(0), 1, None, "client", {"token": 7}]),
        "hello-token-nested": frame([1, 0, U64(0), 1, None, "client",
                                     {"a": [1, {"b": [2, 3]}], "token": "a.b.c"}]),
        # The protocol's edges (docs/protocol.md): request ids 0 and twice
        # open, what a handler may not mean in its answers, kinds only the
        # router sends, kind 0, a GOODBYE that waits, $sb.stats in pages.
        "request-ids": hello("client") + request(0, "fz.echo") + request(5, "fz.stream")
        + request(5, "fz.echo") + request(5, "nobody") + frame([12, 0, U64(5), None])
        + request(5, "fz.echo"),
        "answer-flags": hello("service", "fz-flags")
        + frame([10, 2, U64(77), "done", None, None])
        + frame([10, 1, U64(78), "working", "mallory", [1]])
        + frame([10, 3, U64(79), "chunk", "mallory", b"\x01" * 40])
        + frame([11, 3, U64(80), 2, "x", "mallory", None])
        + frame([11, 2, U64(0), 12, "my own connection", None, None]),
        # Application errors from a handler: one that is well-formed, in a
        # broadcast's answer too, then one whose code and flag disagree.
        "answer-app": hello("service", "fz-app") + frame([5, 0, U64(1), "fz.app", None])
        + frame([9, 1, U64(2), "fz.app", None, U32(0), U32(300), None])
        + frame([11, 4, U64(77), 19, "declined", None, "MYERRCODE", {"limit": 1}])
        + frame([11, 4, U64(78), 19, "", "mallory", "E", None])
        + frame([11, 4, U64(79), 2, "x", None, "E", None]),
        # Headers: a request and a broadcast send that carry them to the
        # echo service, then a map with a key twice.
        "headers": hello("client")
        + frame([9, 2, U64(2), "fz.echo", None, U32(0), U32(300),
                 {"traceparent": TRACEPARENT, "k": ""}, {"n": 1}])
        + frame([8, 3, U64(0), "fz.echo", None, U32(0), {"device": "d 1"}, None])
        + frame([9, 2, U64(3), "fz.echo", None, U32(0), U32(300), {"k": "1", "j": "2"},
                 None]).replace(b"\xa1j", b"\xa1k"),
        "router-kinds": hello("client")
        + frame([2, 0, U64(1), NONCE, "hmac-sha256", None])
        + frame([4, 0, U64(2), 1, "fz-x", 7, 1048576, {"shard": 0}])
        + frame([7, 0, U64(3), None]) + frame([14, 0, U64(4), 1, "A001", 12, None])
        + frame([0, 0, U64(5), None]) + frame([30, 0, U64(6), None])
        + frame([15, 0, U64(7), None]),
        "goodbye-wait": hello("service", "fz-bye") + reg + request(2, "fz.self", 3000)
        + request(3, "fz.stream") + request(4, "fz.echo")
        + frame([17, 0, U64(0), "leaving", 2000, None])
        + frame([5, 0, U64(5), "fz.more", None]) + request(6, "fz.echo")
        + frame([9, 0, U64(7), "fz.any", "fz-bye", U32(0), U32(0), None])
        + frame([17, 0, U64(0), "again", 0, None]),
        "stats-pages": hello("client") + request(1, "$sb.stats", 0, {"after": "fz"})
        + request(2, "$sb.stats", 0, {"after": 7}) + request(3, "$sb.stats", 0, [1, 2])
        + request(4, "$sb.stats", 0, {"after": "", "limit": 3}),
    }
    sessions["all"] = b"".join(v for k, v in sessions.items() if k != "garbage")
    for name, data in sessions.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def write_schema_seeds(directory):
    """Seeds for tests/fuzz/fuzz_schema.c: a 2-byte schema length, the
    schema, then a payload. Every type, bound and fault the checker knows."""
    import os
    pk = lambda v: msgpack.packb(v, use_bin_type=True)
    numbers = {"keys": {"u": {"type": "uint", "min": 2, "max": 18446744073709551615},
                        "i": {"type": ["int", "nil"], "min": -10, "max": -2},
                        "f": {"type": "float", "min": -0.5, "max": 0.5},
                        "b": {"type": "bin", "max": 2}, "m": {"type": "map", "min": 1},
                        "a": {"type": "any"}, "o": {}},
               "additional": True}
    seeds = {
        "user-ok": (pk(USER_SCHEMA), pk({"email": "a@b", "age": 30, "nick": None,
                                         "tags": ["x", {"y": [1]}]})),
        "user-missing": (pk(USER_SCHEMA), pk({"age": 30})),
        "user-unknown": (pk(USER_SCHEMA), pk({"email": "a", "x\u00e9\x01": 1})),
        "user-long": (pk(USER_SCHEMA), pk({"email": "a", "nick": "abcdefghij"})),
        "user-array": (pk(USER_SCHEMA), pk(["a"])),
        "user-nil": (pk(USER_SCHEMA), pk(None)),
        "user-malformed": (pk(USER_SCHEMA), b"\x81\xa5email\xc1"),
        "user-two-values": (pk(USER_SCHEMA), pk({"email": "a"}) + b"\xc0"),
        "numbers-ok": (pk(numbers), pk({"u": 5, "i": -3, "f": 0.25, "b": b"xy",
                                        "m": {1: 2}, "a": [None], "o": -1.5})),
        "numbers-bounds": (pk(numbers), pk({"u": 1, "i": -1, "f": 1e300, "b": b"xyz"})),
        "numbers-widths": (pk(numbers), b"\x83\xa1u\xd0\x05\xa1i\xd3" + b"\xff" * 8
                           + b"\xa1f\xca\x3e\x80\x00\x00"),
        "numbers-nan": (pk(numbers), b"\x81\xa1f\xcb\x7f\xf8" + b"\x00" * 6),
        "numbers-ext": (pk(numbers), b"\x82\xa1a\xd4\x01\x00\xa1b\xc7\x00\x05"),
        "empty-schema": (pk({}), pk({"anything": [1, {"deep": None}]})),
        "nil-schema": (pk(None), pk({"a": 1})),
        "required-only": (pk({"required": ["a", "b"], "keys": {"a": {"type": "str"}}}),
                          pk({"b": 1, "a": "x", 7: None})),
    }
    refusals = [
        [], {"keys": {"age": {"type": "integer"}}}, {"keys": {"t": {"max": 3}}},
        {"keys": {"t": {"type": ["str", "int"], "max": 3}}},
        {"keys": {"t": {"type": "str", "min": 5, "max": 3}}},
        {"required": ["a", "a"]}, {"additional": 0}, {"keyz": {}},
        {"keys": {"n" * 300: {}}}, {"required": ["k%d" % i for i in range(65)]},
    ]
    for i, r in enumerate(refusals):
        seeds["refused-%d" % i] = (pk(r), pk(None))
    seeds["refused-junk"] = (b"\x82\xa4keys", b"")
    # JSON Schema: the nested example, every keyword, each fault, refusals.
    order = {"type": "object", "required": ["email"], "additionalProperties": False,
             "properties": {
                 "email": {"type": "string", "maxLength": 254},
                 "age": {"type": "integer", "minimum": 0, "maximum": 150},
                 "nick": {"type": ["string", "null"], "minLength": 1, "maxLength": 4},
                 "role": {"enum": ["admin", "user", 1, 2.5, None, True]},
                 "version": {"const": 2},
                 "score": {"exclusiveMinimum": 0, "exclusiveMaximum": 10},
                 "address": {"type": "object", "required": ["zip"], "minProperties": 1,
                             "maxProperties": 3,
                             "additionalProperties": {"type": "number"},
                             "properties": {"zip": {"type": "string", "minLength": 5}}},
                 "tags": {"type": "array", "minItems": 1, "maxItems": 3,
                          "items": {"type": "array", "items": {"type": "integer"}}},
                 "no": False, "yes": True}}
    seeds.update({
        "js-ok": (pk(order), pk({"email": "a@b", "age": 30.0, "nick": "Zo\u00eb", "role": 2.5,
                                  "version": 2, "address": {"zip": "75001", "w": 1.5},
                                  "tags": [[1, 2], []], "yes": [None]})),
        "js-nested-type": (pk(order), pk({"email": "a", "address": {"zip": 75001}})),
        "js-nested-missing": (pk(order), pk({"email": "a", "address": {}})),
        "js-item": (pk(order), pk({"email": "a", "tags": [[1, "x"]]})),
        "js-enum": (pk(order), pk({"email": "a", "role": "root"})),
        "js-const": (pk(order), pk({"email": "a", "version": 2.5})),
        "js-exclusive": (pk(order), pk({"email": "a", "score": 10})),
        "js-keys": (pk(order), pk({"email": "a", "address": {"zip": "75001", "a": 1, "b": 2,
                                                                "c": 3}})),
        "js-length": (pk(order), pk({"email": "a", "nick": "h\u00e9llo"})),
        "js-unknown": (pk(order), pk({"email": "a", "zip code\u00e9\x01": 1})),
        "js-false": (pk(order), pk({"email": "a", "no": 1})),
        "js-top": (pk(order), pk(["a"])),
        "js-malformed": (pk(order), b"\x81\xa5email\xc1"),
        "js-nan": (pk({"type": "number", "minimum": 0}), b"\xcb\x7f\xf8" + b"\x00" * 6),
        "js-scalar": (pk({"type": "string", "maxLength": 2, "$comment": "c"}), pk("abc")),
    })
    js_refusals = [
        {"properties": {"zip": {"pattern": "^[0-9]{5}$"}}}, {"$ref": "#/$defs/a"},
        {"type": "str"}, {"items": [{}]}, {"enum": [[1]]}, {"enum": []},
        {"minLength": -1}, {"properties": {"a": {"properties": {"b": 1}}}},
        {"type": "object", "required": ["a", "a"]}, {"additionalProperties": {"oneOf": []}},
    ]
    for i, r in enumerate(js_refusals):
        seeds["js-refused-%d" % i] = (pk(r), pk(None))
    for name, (schema, payload) in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(struct.pack(">H", len(schema)) + schema + payload)


def main():
    if sys.argv[1:2] == ["--router-seeds"]:
        write_router_seeds(sys.argv[2])
        return 0
    if sys.argv[1:2] == ["--schema-seeds"]:
        write_schema_seeds(sys.argv[2])
        return 0
    if sys.argv[1:] == ["--dump"]:
        print(dumps_for_docs())
        return 0
    if sys.argv[1:2] == ["--seeds"]:
        write_seeds(sys.argv[2])
        return 0
    tool, doc = sys.argv[1], sys.argv[2]
    failures = 0

    def fail(msg):
        nonlocal failures
        failures += 1
        print("FAIL " + msg)

    frames = [frame(e) for _, e in VECTORS]
    results = run_decoder(tool, frames)
    for (name, elems), f, r in zip(VECTORS, frames, results):
        if not r["ok"]:
            fail("%s: our decoder refused python's frame: %s" % (name, r))
            continue
        want = [plain(e) for e in elems[:-1]]
        if r["fields"] != want:
            fail("%s: fields %s, python built %s" % (name, r["fields"], want))
        payload = msgpack.packb(elems[-1], use_bin_type=True)
        if r["payload"] != payload.hex():
            fail("%s: payload view differs" % name)
        if r["reencoded"] != f.hex():
            fail("%s: our encoding differs from python's\n ours   %s\n python %s"
                 % (name, r["reencoded"][:200], f.hex()[:200]))
        ours = bytes.fromhex(r["reencoded"])
        back = msgpack.unpackb(ours[4:], raw=False)
        if back != [decoded(e) for e in elems]:
            fail("%s: python reads our frame as %r" % (name, back))
        if struct.unpack(">I", ours[:4])[0] != len(ours) - 4:
            fail("%s: length prefix wrong" % name)
    print("%d vectors: python encodes, we decode; we encode, python decodes" % len(VECTORS))

    bad = [invalid_frame(n, e) for n, e, _, _, _ in INVALID]
    for (name, _, code, fault, field), r in zip(INVALID, run_decoder(tool, bad)):
        got = (r["ok"], r.get("code"), r.get("fault"), r.get("field"))
        if got != (False, code, fault, field):
            fail("%s: expected %s/%s at field %d, got %s" % (name, code, fault, field, r))
    print("%d invalid frames refused with the documented fault" % len(INVALID))

    docs = doc_vectors(doc)
    vectors = dict(VECTORS)
    for name in [n for n, _ in VECTORS[:len(KINDS)]]:
        if name not in docs:
            fail("docs/protocol.md has no dump for %s" % name)
        elif docs[name] != frame(vectors[name]):
            fail("docs/protocol.md dump for %s is not the vector's frame" % name)
    for name in docs:
        if name not in vectors:
            fail("docs/protocol.md has a dump %s with no vector" % name)
        elif docs[name] != frame(vectors[name]):
            fail("docs/protocol.md dump %s is not the vector's frame" % name)
    doc_results = run_decoder(tool, list(docs.values()))
    for name, r in zip(docs, doc_results):
        if not r["ok"]:
            fail("docs/protocol.md dump %s does not decode: %s" % (name, r))
    print("%d hex dumps in docs/protocol.md match the vectors and decode" % len(docs))

    check_schemas(tool, doc, fail)

    print("golden: %s" % ("FAILED (%d)" % failures if failures else "all passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
