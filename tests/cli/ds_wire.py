#!/usr/bin/env python3
"""ds_wire.py - an independent implementation of the ds-sync/1 wire format.

This is a second implementation of the frames and messages of the sync
protocol, written from docs/protocol.md alone (without looking at the C
sources), to show that the document is precise enough for another
implementation to interoperate.  The tests use it to check that the
document matches the C implementation: it builds SYNC_REQUEST,
SYNC_RESPONSE and ERROR frames, and it validates byte streams with the
rules the document gives a subscriber (and, for a request, a publisher).

Standard library only: the small MessagePack codec below was written from
the MessagePack format specification.

Commands (binary data on stdin/stdout, JSON results on stdout; exit status
0 on success, 1 when the input breaks a documented rule, 2 on a usage
error; hex output is lowercase):

  request [--cursor HEX] [--max-nodes N] [--max-bytes N] [--v N] [--type T]
      one framed SYNC_REQUEST, a 5-entry map in the order the document
      gives (type, v, cursor, max_nodes, max_bytes); max_nodes and
      max_bytes are always encoded, 0 unless given.
  frame --payload-hex HEX [--length N]
      a raw frame: 4-byte big-endian length (N, or the payload's) + payload.
  decode [--shared ROOT]...
      validates a whole publisher->subscriber stream as a subscriber must.
  decode-request
      validates one framed request as a publisher must.
  cursor HEX
      what a subscriber can see of a cursor from ds's publisher: its
      layout version (the rest is sealed).
  share-digest ROOT...
      the share digest a publisher binds its cursors to (BLAKE2b-128,
      key ds-share-v1).
  response --nodes-json FILE [--page-nodes K] [--no-hash] [--bad-hash]
      a publisher->subscriber stream of SYNC_RESPONSE pages.
  error --code CODE --message TEXT
      one framed ERROR message.
  selftest
      round trips and the negative cases the document lists.
"""

import argparse
import hashlib
import json
import math
import os
import struct
import sys

# --------------------------------------------------------------- constants

PROTOCOL_VERSION = 1
MAX_FRAME = 16_777_216            # publisher -> subscriber ("Frames")
MAX_REQUEST_FRAME = 65_536        # subscriber -> publisher
MAX_NODES_PER_PAGE = 1000         # what a receiver accepts
MAX_NODE_ENCODED = 1_311_744      # one encoded node map
MAX_CONTENT = 1_048_576
MAX_TEXT_FIELD = 65_536           # source, project, namespace, metadata
MAX_SKIP_DEPTH = 32               # nesting inside a skipped value
MAX_SHORT_STR = 31                # type, code
MAX_ERROR_MESSAGE = 4096
MAX_NODE_ID = 64
CURSOR_LEN = 41
UINT32_MAX = 2**32 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

MESSAGE_TYPES = (b"sync_request", b"sync_response", b"error",
                 b"export_header", b"signature")
SOURCE_TYPES = (b"session", b"file", b"note")
SHARE_DIGEST_KEY = b"ds-share-v1"
CURSOR_LAYOUT = 1
RESPONSE_EPOCH = b"ds_wire.py epoch"  # 16 bytes: our publisher's "store"

# The three <reason> texts of "malformed message ... (<reason>)".
MALFORMED = "malformed data"
TRUNCATED = "data ends early (truncated)"
TOO_LARGE = "input too large"


class Malformed(Exception):
    """A payload that breaks a rule of the document."""

    def __init__(self, reason, detail):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class WrongVersion(Exception):
    """A message whose `v` is not 1."""

    def __init__(self, version):
        super().__init__(f"v = {version}")
        self.version = version


class FrameError(Exception):
    """A frame that cannot be cut from the stream: kind is `zero`,
    `too_large` (length holds the announced length) or `truncated`."""

    def __init__(self, kind, length=None):
        super().__init__(kind)
        self.kind = kind
        self.length = length


class UsageError(Exception):
    """Bad command-line input (exit status 2)."""


# ------------------------------------------------------ MessagePack encoder


class Float32(float):
    """A float to encode as MessagePack float32 (ds itself writes float64)."""


class RawStr(bytes):
    """A MessagePack str whose bytes are given as is (may be bad UTF-8)."""


class Raw(bytes):
    """Bytes inserted verbatim: an already encoded value."""


class Pairs(list):
    """A map given as (key, value) pairs in order; keys may repeat."""


def pack(value):
    """Encode a Python value as MessagePack (integers in the smallest form)."""
    out = bytearray()
    _pack_into(out, value)
    return bytes(out)


def _pack_length(out, n, fix_base, fix_max, code8, code16, code32):
    if fix_base is not None and n <= fix_max:
        out.append(fix_base | n)
    elif code8 is not None and n <= 0xFF:
        out += bytes((code8, n))
    elif n <= 0xFFFF:
        out.append(code16)
        out += n.to_bytes(2, "big")
    elif n <= 0xFFFFFFFF:
        out.append(code32)
        out += n.to_bytes(4, "big")
    else:
        raise ValueError("too long for MessagePack")


def _pack_int(out, n):
    if 0 <= n <= 0x7F:
        out.append(n)
    elif -32 <= n < 0:
        out.append(n & 0xFF)
    elif n >= 0:
        for code, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if n < 1 << (8 * size):
                out.append(code)
                out += n.to_bytes(size, "big")
                return
        raise ValueError("integer above uint64")
    else:
        for code, size in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
            if n >= -(1 << (8 * size - 1)):
                out.append(code)
                out += n.to_bytes(size, "big", signed=True)
                return
        raise ValueError("integer below int64")


def _pack_into(out, v):
    if isinstance(v, Raw):
        out += v
    elif v is None:
        out.append(0xC0)
    elif isinstance(v, bool):
        out.append(0xC3 if v else 0xC2)
    elif isinstance(v, int):
        _pack_int(out, v)
    elif isinstance(v, Float32):
        out.append(0xCA)
        out += struct.pack(">f", v)
    elif isinstance(v, float):
        out.append(0xCB)
        out += struct.pack(">d", v)
    elif isinstance(v, RawStr):
        _pack_length(out, len(v), 0xA0, 31, 0xD9, 0xDA, 0xDB)
        out += v
    elif isinstance(v, str):
        _pack_into(out, RawStr(v.encode("utf-8")))
    elif isinstance(v, (bytes, bytearray)):
        _pack_length(out, len(v), None, 0, 0xC4, 0xC5, 0xC6)
        out += v
    elif isinstance(v, (Pairs, dict)):
        pairs = v if isinstance(v, Pairs) else list(v.items())
        _pack_length(out, len(pairs), 0x80, 15, None, 0xDE, 0xDF)
        for key, item in pairs:
            _pack_into(out, key)
            _pack_into(out, item)
    elif isinstance(v, (list, tuple)):
        _pack_length(out, len(v), 0x90, 15, None, 0xDC, 0xDD)
        for item in v:
            _pack_into(out, item)
    else:
        raise TypeError(f"cannot encode {type(v).__name__}")


def frame(payload, length=None):
    """One frame: 4-byte big-endian length, then the payload."""
    return (len(payload) if length is None else length).to_bytes(4, "big") + payload


# ------------------------------------------------------ MessagePack decoder

NIL, BOOL, INT, FLOAT32, FLOAT64, STR, BIN, EXT, ARRAY, MAP = (
    "nil", "bool", "int", "float32", "float64", "str", "bin", "ext",
    "array", "map")


class Item:
    """One decoded header: for str/bin/ext the bytes, for array/map the
    number of elements / pairs (not yet read), else the value."""

    __slots__ = ("kind", "value")

    def __init__(self, kind, value):
        self.kind = kind
        self.value = value


class Reader:
    """A bounded reader over one payload: every length is checked against
    the bytes present before anything is taken."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def remaining(self):
        return len(self.data) - self.pos

    def take(self, n):
        if n > self.remaining():
            raise Malformed(TRUNCATED, f"{n} bytes announced at offset "
                            f"{self.pos}, {self.remaining()} present")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def _uint(self, size):
        return int.from_bytes(self.take(size), "big")

    def _container(self, kind, count):
        # Each element takes at least one byte, a pair at least two.
        needed = count if kind == ARRAY else 2 * count
        if needed > self.remaining():
            raise Malformed(TRUNCATED, f"{kind} of {count} entries at offset "
                            f"{self.pos} but {self.remaining()} bytes left")
        return Item(kind, count)

    def _ext(self, size):
        self.take(1)  # the extension type
        return Item(EXT, self.take(size))

    def next(self):
        """Read one value's header (and the bytes of a str, bin or ext)."""
        start = self.pos
        b = self.take(1)[0]
        if b <= 0x7F:
            return Item(INT, b)
        if b >= 0xE0:
            return Item(INT, b - 0x100)
        if b <= 0x8F:
            return self._container(MAP, b & 0x0F)
        if b <= 0x9F:
            return self._container(ARRAY, b & 0x0F)
        if b <= 0xBF:
            return Item(STR, self.take(b & 0x1F))
        if b == 0xC0:
            return Item(NIL, None)
        if b in (0xC2, 0xC3):
            return Item(BOOL, b == 0xC3)
        if b in (0xC4, 0xC5, 0xC6):
            return Item(BIN, self.take(self._uint(1 << (b - 0xC4))))
        if b in (0xC7, 0xC8, 0xC9):
            return self._ext(self._uint(1 << (b - 0xC7)))
        if b == 0xCA:
            return Item(FLOAT32, struct.unpack(">f", self.take(4))[0])
        if b == 0xCB:
            return Item(FLOAT64, struct.unpack(">d", self.take(8))[0])
        if 0xCC <= b <= 0xCF:
            return Item(INT, self._uint(1 << (b - 0xCC)))
        if 0xD0 <= b <= 0xD3:
            size = 1 << (b - 0xD0)
            return Item(INT, int.from_bytes(self.take(size), "big", signed=True))
        if 0xD4 <= b <= 0xD8:
            return self._ext(1 << (b - 0xD4))
        if b in (0xD9, 0xDA, 0xDB):
            return Item(STR, self.take(self._uint(1 << (b - 0xD9))))
        if b in (0xDC, 0xDD):
            return self._container(ARRAY, self._uint(2 if b == 0xDC else 4))
        if b in (0xDE, 0xDF):
            return self._container(MAP, self._uint(2 if b == 0xDE else 4))
        raise Malformed(MALFORMED, f"byte 0x{b:02x} at offset {start} is "
                        "not a MessagePack type")

    def skip(self, level=0):
        """Skip one value of any type; `level` is its depth below the
        skipped value (which is level 0).  Elements deeper than 32 levels
        are malformed ("Messages")."""
        item = self.next()
        if item.kind not in (ARRAY, MAP):
            return
        count = item.value if item.kind == ARRAY else 2 * item.value
        if count and level + 1 > MAX_SKIP_DEPTH:
            raise Malformed(MALFORMED, "a skipped value nests deeper than "
                            f"{MAX_SKIP_DEPTH} levels")
        for _ in range(count):
            self.skip(level + 1)


def unpack(data):
    """Decode one MessagePack value into plain Python (for tests/tools);
    maps become lists of pairs so that repeated keys stay visible."""
    r = Reader(data)
    value = _unpack_value(r)
    if r.remaining():
        raise Malformed(MALFORMED, f"{r.remaining()} bytes after the value")
    return value


def _unpack_value(r, depth=0):
    if depth > 100:
        raise Malformed(MALFORMED, "nesting too deep")
    item = r.next()
    if item.kind == ARRAY:
        return [_unpack_value(r, depth + 1) for _ in range(item.value)]
    if item.kind == MAP:
        return Pairs((_unpack_value(r, depth + 1), _unpack_value(r, depth + 1))
                     for _ in range(item.value))
    if item.kind == STR:
        return item.value.decode("utf-8", "replace")
    return item.value


# ---------------------------------------------------- typed field readers


def _kind_error(what, expected, item):
    return Malformed(MALFORMED, f"`{what}` must be {expected}, not {item.kind}")


def check_text(raw, what):
    """The document's UTF-8 rule: no NUL, no overlong form, no surrogate,
    nothing above U+10FFFF (Python's strict decoder refuses the last three)."""
    if b"\0" in raw:
        raise Malformed(MALFORMED, f"`{what}` contains a NUL byte")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(MALFORMED, f"`{what}` is not valid UTF-8 "
                        f"({exc.reason} at byte {exc.start})") from None


def read_key(r, where):
    item = r.next()
    if item.kind != STR:
        raise Malformed(MALFORMED, f"a key of {where} is a {item.kind}, not a str")
    return item.value


def read_uint(r, what, maximum=None):
    item = r.next()
    if item.kind != INT or item.value < 0:
        raise _kind_error(what, "an integer >= 0", item)
    if maximum is not None and item.value > maximum:
        raise Malformed(MALFORMED, f"`{what}` {item.value} is above {maximum}")
    return item.value


def read_int64(r, what):
    item = r.next()
    if item.kind != INT:
        raise _kind_error(what, "an integer", item)
    if not INT64_MIN <= item.value <= INT64_MAX:
        raise Malformed(MALFORMED, f"`{what}` {item.value} is outside int64")
    return item.value


def read_bool(r, what):
    item = r.next()
    if item.kind != BOOL:
        raise _kind_error(what, "a bool", item)
    return item.value


def read_str(r, what, limit, text=False, nil_ok=False, too_long=MALFORMED):
    """A str of at most `limit` bytes: valid UTF-8 without NUL when `text`,
    else only without NUL.  Returns its bytes (None for an allowed nil).
    `too_long` is the reason given when it is longer than `limit`."""
    item = r.next()
    if item.kind == NIL and nil_ok:
        return None
    if item.kind != STR:
        raise _kind_error(what, "a str" + (" or nil" if nil_ok else ""), item)
    if len(item.value) > limit:
        raise Malformed(too_long, f"`{what}` is {len(item.value)} bytes, "
                        f"above {limit}")
    if text:
        check_text(item.value, what)
    elif b"\0" in item.value:
        raise Malformed(MALFORMED, f"`{what}` contains a NUL byte")
    return item.value


def _bin_of(item, what, size, expected):
    """The value of |item|, a bin of exactly |size| bytes."""
    if item.kind != BIN:
        raise _kind_error(what, expected, item)
    if len(item.value) != size:
        raise Malformed(MALFORMED, f"`{what}` is {len(item.value)} bytes, "
                        f"not {size}")
    return item.value


def read_bin(r, what, size):
    return _bin_of(r.next(), what, size, f"a bin of {size} bytes")


def read_cursor(r, what):
    """nil or a bin of exactly 41 bytes."""
    item = r.next()
    if item.kind == NIL:
        return None
    return _bin_of(item, what, CURSOR_LEN, "nil or a bin of 41 bytes")


def read_confidence(r, what):
    item = r.next()
    if item.kind not in (INT, FLOAT32, FLOAT64):
        raise _kind_error(what, "a float or an integer", item)
    value = item.value
    if isinstance(value, float) and math.isnan(value):
        raise Malformed(MALFORMED, f"`{what}` is NaN")
    if not 0 <= value <= 1:
        raise Malformed(MALFORMED, f"`{what}` {value} is not within 0..1")
    return float(value)


# -------------------------------------------------------------- node maps

# key -> reader, for the keys of the "Node map" table.
def _node_text(limit, nil_ok=False):
    # A node's text field: a str longer than its limit is "input too large"
    # (the document names no reason; this is what the C build reports).
    return lambda r, what: read_str(r, what, limit, text=True, nil_ok=nil_ok,
                                    too_long=TOO_LARGE)


NODE_FIELDS = {
    b"id": lambda r, w: read_bin(r, w, 16),
    b"content": _node_text(MAX_CONTENT),
    b"source": _node_text(MAX_TEXT_FIELD),
    b"source_type": lambda r, w: read_str(r, w, MAX_SHORT_STR),
    b"project": _node_text(MAX_TEXT_FIELD),
    b"namespace": _node_text(MAX_TEXT_FIELD),
    b"timestamp": read_int64,
    b"confidence": read_confidence,
    b"chunk_index": lambda r, w: read_uint(r, w, UINT32_MAX),
    b"hash": lambda r, w: read_bin(r, w, 32),
    b"metadata": _node_text(MAX_TEXT_FIELD, nil_ok=True),
}
NODE_REQUIRED = (b"id", b"content", b"source", b"source_type", b"timestamp")
# "Inside a node, a repeated id, content, source, source_type, timestamp
# or hash is malformed; any other repeated key is not detected".
NODE_NO_REPEAT = NODE_REQUIRED + (b"hash",)
# ds writes its records with the table's keys in this order.
NODE_KEY_ORDER = ("id", "content", "source", "source_type", "project",
                  "namespace", "timestamp", "confidence", "chunk_index",
                  "hash", "metadata")


def content_hash(content):
    """BLAKE2b-256, unkeyed, of the raw bytes of `content`."""
    return hashlib.blake2b(content, digest_size=32).digest()


class Node:
    """A validated node map: the last value of each known key, and every
    key in wire order."""

    def __init__(self):
        self.values = {}
        self.keys = []
        self.size = 0

    def text(self, key, default=""):
        raw = self.values.get(key)
        return default if raw is None else raw.decode("utf-8")

    @property
    def project(self):
        return self.text(b"project")

    @property
    def namespace(self):
        # Absent reads as `personal`, and "" is stored as `personal`.
        return self.text(b"namespace") or "personal"

    def to_json(self):
        given = self.values.get(b"hash")
        metadata = self.values.get(b"metadata")
        return {
            "id": self.values[b"id"].hex(),
            "content": self.text(b"content"),
            "source": self.text(b"source"),
            "source_type": self.text(b"source_type"),
            "project": self.project,
            "namespace": self.namespace,
            "timestamp": self.values[b"timestamp"],
            "chunk_index": self.values.get(b"chunk_index", 0),
            "confidence": self.values.get(b"confidence", 0.0),
            "metadata": None if metadata is None else metadata.decode("utf-8"),
            "hash_given": None if given is None else given.hex(),
            "hash_ok": (None if given is None
                        else given == content_hash(self.values[b"content"])),
            "keys": [k.decode("utf-8", "replace") for k in self.keys],
        }


def read_node(r, index):
    start = r.pos
    item = r.next()
    if item.kind != MAP:
        raise _kind_error(f"nodes[{index}]", "a map", item)
    node = Node()
    for _ in range(item.value):
        key = read_key(r, f"nodes[{index}]")
        node.keys.append(key)
        reader = NODE_FIELDS.get(key)
        if reader is None:
            r.skip()  # unknown keys are skipped, whatever their type
            continue
        name = f"nodes[{index}].{key.decode()}"
        if key in NODE_NO_REPEAT and key in node.values:
            raise Malformed(MALFORMED, f"`{name}` is repeated")
        node.values[key] = reader(r, name)
    node.size = r.pos - start
    if node.size > MAX_NODE_ENCODED:
        raise Malformed(TOO_LARGE, f"nodes[{index}] is {node.size} bytes "
                        f"encoded, above {MAX_NODE_ENCODED}")
    for key in NODE_REQUIRED:
        if key not in node.values:
            raise Malformed(MALFORMED, f"nodes[{index}] has no `{key.decode()}`")
    if node.values[b"source_type"] not in SOURCE_TYPES:
        raise Malformed(MALFORMED, f"nodes[{index}].source_type "
                        f"{node.values[b'source_type']!r} is not session, "
                        "file or note")
    return node


def read_nodes(r):
    item = r.next()
    if item.kind != ARRAY:
        raise _kind_error("nodes", "an array", item)
    if item.value > MAX_NODES_PER_PAGE:
        raise Malformed(TOO_LARGE, f"{item.value} nodes, above "
                        f"{MAX_NODES_PER_PAGE}")
    return [read_node(r, i) for i in range(item.value)]


# --------------------------------------------------------------- messages


class Message:
    """A decoded message: the last value of every known key."""

    def __init__(self):
        self.type = None          # bytes
        self.v = None
        self.has_cursor = False   # `cursor` / `new_cursor` present
        self.cursor = None        # None (nil) or 41 bytes
        self.max_nodes = 0
        self.max_bytes = 0
        self.nodes = []
        self.has_more = False
        self.full = None
        self.code = None
        self.message = None
        self.node_id = None
        self.created = None
        self.sig = None
        self.keys = []

    @property
    def type_name(self):
        return self.type.decode("utf-8", "replace")


def _read_entries(r, msg):
    item = r.next()
    if item.kind != MAP:
        raise _kind_error("the payload", "a map", item)
    for _ in range(item.value):
        key = read_key(r, "the message")
        msg.keys.append(key)
        if key == b"type":
            msg.type = read_str(r, "type", MAX_SHORT_STR)
        elif key == b"v":
            msg.v = read_uint(r, "v")
        elif key in (b"cursor", b"new_cursor"):
            # One field: the last of them wins.
            msg.cursor = read_cursor(r, key.decode())
            msg.has_cursor = True
        elif key == b"max_nodes":
            msg.max_nodes = read_uint(r, "max_nodes")
        elif key == b"max_bytes":
            msg.max_bytes = read_uint(r, "max_bytes")
        elif key == b"nodes":
            if msg.nodes:
                raise Malformed(MALFORMED, "`nodes` repeated after a "
                                "non-empty `nodes`")
            msg.nodes = read_nodes(r)
        elif key == b"has_more":
            msg.has_more = read_bool(r, "has_more")
        elif key == b"full":
            msg.full = read_bool(r, "full")
        elif key == b"code":
            msg.code = read_str(r, "code", MAX_SHORT_STR)
        elif key == b"message":
            msg.message = read_str(r, "message", MAX_ERROR_MESSAGE, text=True)
        elif key == b"node_id":
            msg.node_id = read_str(r, "node_id", MAX_NODE_ID)
        elif key == b"created":
            msg.created = read_int64(r, "created")
        elif key == b"sig":
            msg.sig = read_bin(r, "sig", 64)
        else:
            r.skip()


def peek_version(payload):
    """`v` as the document's "Versions" section finds it in a payload that
    does not validate: the payload is a map, the entries before `v` are
    well-formed (str keys, values that can be skipped) and `v` is a uint.
    Returns None otherwise.  "Well-formed" is read as well-formed
    MessagePack: the known keys before `v` are not type-checked here."""
    r = Reader(payload)
    try:
        item = r.next()
        if item.kind != MAP:
            return None
        for _ in range(item.value):
            key = read_key(r, "the message")
            if key == b"v":
                return read_uint(r, "v")
            r.skip()
    except Malformed:
        return None
    return None


def decode_message(payload):
    """Decode and fully validate one payload.  Raises Malformed, or
    WrongVersion when `v` is not 1 (also when the payload does not
    validate but peek_version finds a `v` other than 1)."""
    msg = Message()
    r = Reader(payload)
    try:
        _read_entries(r, msg)
        if r.remaining():
            raise Malformed(MALFORMED, f"{r.remaining()} bytes after the map")
    except Malformed:
        version = peek_version(payload)
        if version is not None and version != PROTOCOL_VERSION:
            raise WrongVersion(version) from None
        raise
    if msg.type is None:
        raise Malformed(MALFORMED, "no `type`")
    if msg.v is None:
        raise Malformed(MALFORMED, "no `v`")
    if msg.v != PROTOCOL_VERSION:
        raise WrongVersion(msg.v)
    if msg.type not in MESSAGE_TYPES:
        raise Malformed(MALFORMED, f"unknown type {msg.type_name!r}")
    if msg.type == b"sync_response" and msg.cursor is None:
        raise Malformed(MALFORMED, "sync_response without a 41-byte "
                        "`new_cursor`")
    if msg.type == b"error" and not msg.code:
        raise Malformed(MALFORMED, "error without a non-empty `code`")
    return msg


def read_frame(data, pos, limit):
    """Cut the frame at `pos`: returns (payload, next position)."""
    if len(data) - pos < 4:
        raise FrameError("truncated")
    length = int.from_bytes(data[pos:pos + 4], "big")
    if length == 0:
        raise FrameError("zero")
    if length > limit:  # checked as soon as the 4 length bytes are known
        raise FrameError("too_large", length)
    if len(data) - pos - 4 < length:
        raise FrameError("truncated")
    return data[pos + 4:pos + 4 + length], pos + 4 + length


# ---------------------------------------------------------- share digest


def share_digest(roots):
    """BLAKE2b-128, key `ds-share-v1`, over the sorted, deduplicated roots,
    each followed by a NUL byte."""
    data = b"".join(root + b"\0" for root in sorted(set(roots)))
    return hashlib.blake2b(data, digest_size=16, key=SHARE_DIGEST_KEY).digest()


def is_shared(project, roots):
    """A shared root, or beneath one on a path boundary."""
    for root in roots:
        prefix = root if root.endswith("/") else root + "/"
        if project == root or project.startswith(prefix):
            return True
    return False


# This tool's own publisher lays its cursors out in the clear (the
# document lets a publisher put anything in the 41 bytes; ds's own are
# sealed, layout 2).
def make_cursor(epoch, seq, digest, layout=CURSOR_LAYOUT):
    return bytes((layout,)) + epoch + seq.to_bytes(8, "big") + digest


def split_cursor(cursor):
    return {"layout": cursor[0], "epoch": cursor[1:17].hex(),
            "seq": int.from_bytes(cursor[17:25], "big"),
            "share_digest": cursor[25:41].hex()}


# ------------------------------------------------------- subscriber side


def decode_stream(data, shared_roots=None):
    """Validate a publisher->subscriber stream (the end of `data` is the
    publisher's FIN) as the document's subscriber does."""
    result = {"ok": False, "problem": None, "done": False, "pages": [],
              "nodes": [], "error": None, "last_cursor": None}

    def fail(problem):
        result["problem"] = problem
        return result

    pos = 0
    last_page = False
    while True:
        if pos == len(data):  # the publisher's FIN
            if result["error"] is None and not last_page:
                return fail("stream ended before the last page")
            result["ok"] = True
            result["done"] = last_page
            return result
        if last_page:
            return fail("publisher sent data after the last page")
        if result["error"] is not None:
            return fail("publisher sent data after its ERROR (an ERROR is "
                        "always last)")
        try:
            payload, pos = read_frame(data, pos, MAX_FRAME)
        except FrameError as exc:
            if exc.kind == "zero":
                return fail("publisher sent a malformed frame (zero length)")
            if exc.kind == "too_large":
                return fail(f"publisher sent a frame of {exc.length} bytes, "
                            f"above the limit of {MAX_FRAME} bytes")
            return fail("stream ended inside a frame")
        try:
            msg = decode_message(payload)
        except WrongVersion as exc:
            return fail(f"publisher answered with sync protocol version "
                        f"{exc.version}; this build speaks version 1")
        except Malformed as exc:
            return fail(f"malformed message from the publisher ({exc.reason}): "
                        f"{exc.detail}")
        if msg.type == b"error":
            result["error"] = {
                "code": msg.code.decode("utf-8", "replace"),
                "message": (None if msg.message is None
                            else msg.message.decode("utf-8"))}
            continue
        if msg.type != b"sync_response":
            return fail(f"unexpected {msg.type_name} message from the publisher")
        if shared_roots is not None:
            for node in msg.nodes:
                if not is_shared(node.project, shared_roots):
                    return fail(f"node {node.values[b'id'].hex()} has project "
                                f"{node.project!r}, which is not a shared "
                                "root or beneath one")
        result["pages"].append({"nodes": len(msg.nodes),
                                "has_more": msg.has_more,
                                "new_cursor": msg.cursor.hex()})
        result["nodes"].extend(node.to_json() for node in msg.nodes)
        result["last_cursor"] = msg.cursor.hex()
        last_page = not msg.has_more


# -------------------------------------------------------- publisher side


def decode_request(data):
    """Validate one framed request as the document's publisher does; the
    problem is the ERROR it would answer, as `Code: message`."""
    result = {"ok": False, "problem": None, "v": None, "type": None,
              "cursor": None, "max_nodes": 0, "max_bytes": 0}

    def fail(code, message):
        result["problem"] = f"{code}: {message}"
        return result

    if not data:
        return fail("BadRequest", "Stream ended before a request")
    try:
        payload, end = read_frame(data, 0, MAX_REQUEST_FRAME)
    except FrameError as exc:
        if exc.kind == "zero":
            return fail("BadRequest",
                        "Subscriber sent a malformed frame (zero length)")
        if exc.kind == "too_large":
            return fail("BadRequest", f"Subscriber sent a frame of {exc.length}"
                        f" bytes, above the limit of {MAX_REQUEST_FRAME} bytes")
        return fail("BadRequest", "Stream ended inside a frame")
    try:
        msg = decode_message(payload)
    except WrongVersion as exc:
        result["v"] = exc.version
        return fail("UnsupportedVersion", f"Unsupported sync protocol version "
                    f"{exc.version}; this publisher speaks version 1")
    except Malformed as exc:
        return fail("BadRequest",
                    f"Malformed sync request ({exc.reason}): {exc.detail}")
    result.update(v=msg.v, type=msg.type_name,
                  cursor=None if msg.cursor is None else msg.cursor.hex(),
                  max_nodes=min(msg.max_nodes, UINT32_MAX),
                  max_bytes=min(msg.max_bytes, UINT32_MAX))
    if msg.type != b"sync_request":
        return fail("BadRequest", f"Expected sync_request, got {msg.type_name}")
    if end != len(data):
        return fail("BadRequest", "Unexpected data after the request")
    result["ok"] = True
    return result


# -------------------------------------------------------------- builders


def build_request(cursor=None, max_nodes=0, max_bytes=0, version=1,
                  type_name="sync_request"):
    return frame(pack(Pairs([("type", type_name), ("v", version),
                             ("cursor", cursor), ("max_nodes", max_nodes),
                             ("max_bytes", max_bytes)])))


def build_error(code, message):
    return frame(pack(Pairs([("type", "error"), ("v", 1), ("code", code),
                             ("message", message)])))


def new_node_id():
    """16 random bytes with the UUID v4 version and variant bits set."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return bytes(raw)


def node_pairs(spec, hash_mode="good"):
    """A node map from a JSON node object, with the keys ds writes in the
    "Node map" table's order (10 keys, 11 with metadata); hash_mode is
    `good`, `none` (no hash key) or `bad` (a wrong 32-byte hash)."""
    for key in ("content", "source", "source_type"):
        if not isinstance(spec.get(key), str):
            raise UsageError(f"a node needs a string `{key}`")
    for key in ("project", "namespace"):
        if not isinstance(spec.get(key, ""), str):
            raise UsageError(f"a node's `{key}` must be a string")
    timestamp = spec.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise UsageError("a node needs an integer `timestamp`")
    if "id" in spec:
        node_id = _hex(str(spec["id"]), "a node's `id`")
        if len(node_id) != 16:
            raise UsageError("a node's `id` must be 16 bytes (32 hex digits)")
    else:
        node_id = new_node_id()
    digest = content_hash(spec["content"].encode("utf-8"))
    if hash_mode == "bad":
        digest = bytes((digest[0] ^ 0xFF,)) + digest[1:]
    pairs = Pairs([
        ("id", node_id),
        ("content", spec["content"]),
        ("source", spec["source"]),
        ("source_type", spec["source_type"]),
        ("project", spec.get("project", "")),
        ("namespace", spec.get("namespace", "personal")),
        ("timestamp", timestamp),                       # smallest int form
        ("confidence", float(spec.get("confidence", 0.0))),  # float64
        ("chunk_index", int(spec.get("chunk_index", 0))),
    ])
    if hash_mode != "none":
        pairs.append(("hash", digest))
    if "metadata" in spec:
        metadata = spec["metadata"]
        if isinstance(metadata, (dict, list)):
            metadata = json.dumps(metadata, separators=(",", ":"))
        elif metadata is not None and not isinstance(metadata, str):
            raise UsageError("a node's `metadata` must be a string, null or JSON")
        pairs.append(("metadata", metadata))
    return pairs


def build_response(nodes, page_nodes=100, hash_mode="good"):
    """SYNC_RESPONSE frames of `page_nodes` nodes (at least one page)."""
    encoded = [Raw(pack(node_pairs(spec, hash_mode))) for spec in nodes]
    digest = share_digest([])
    out = bytearray()
    sent = 0
    while True:
        page = encoded[sent:sent + page_nodes]
        sent += len(page)
        has_more = sent < len(encoded)
        out += frame(pack(Pairs([
            ("type", "sync_response"), ("v", 1),
            ("new_cursor", make_cursor(RESPONSE_EPOCH, sent, digest)),
            ("has_more", has_more), ("nodes", page)])))
        if not has_more:
            return bytes(out)


# --------------------------------------------------------------- selftest


class SelftestFailure(Exception):
    pass


class Checks:
    def __init__(self):
        self.passed = 0

    def check(self, name, condition, detail=""):
        if not condition:
            raise SelftestFailure(f"{name}: {detail}")
        self.passed += 1

    def stream(self, name, data, ok, problem=None, **expect):
        res = decode_stream(data, expect.pop("shared", None))
        got = res["problem"] or ""
        self.check(name, res["ok"] == ok and (problem is None or problem in got),
                   f"expected ok={ok} {problem!r}, got ok={res['ok']} {got!r}")
        for key, value in expect.items():
            self.check(f"{name} [{key}]", res[key] == value,
                       f"{key}: expected {value!r}, got {res[key]!r}")
        return res

    def request(self, name, data, ok, problem=None):
        res = decode_request(data)
        got = res["problem"] or ""
        self.check(name, res["ok"] == ok and (problem is None or problem in got),
                   f"expected ok={ok} {problem!r}, got ok={res['ok']} {got!r}")
        return res


TEST_CURSOR = make_cursor(b"selftest-epoch-1", 7, share_digest([b"/a/proj"]))


def _test_node(replace=(), drop=(), extra=()):
    """A valid node map as pairs, with values replaced, keys dropped and
    pairs appended."""
    pairs = node_pairs({"id": "00112233445566778899aabbccddeeff",
                        "content": "hello", "source": "note:x",
                        "source_type": "note", "project": "/a/proj",
                        "timestamp": 1_700_000_000_000, "confidence": 0.5})
    replace = dict(replace)
    pairs = Pairs((k, replace.get(k, v)) for k, v in pairs if k not in drop)
    pairs.extend(extra)
    return pairs


def _test_page(nodes=(), has_more=False, cursor=TEST_CURSOR, extra=(),
               cursor_key="new_cursor"):
    pairs = Pairs([("type", "sync_response"), ("v", 1), (cursor_key, cursor),
                   ("has_more", has_more), ("nodes", list(nodes))])
    pairs.extend(extra)
    return frame(pack(pairs))


def _test_msg(pairs):
    return frame(pack(Pairs(pairs)))


def _selftest_codec(c):
    for n in (0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32,
              2**64 - 1, -1, -32, -33, -128, -129, -32768, -32769, -2**31,
              -2**31 - 1, -2**63):
        c.check(f"msgpack int {n}", unpack(pack(n)) == n)
    for size in (31, 32, 255, 256, 65536):
        c.check(f"msgpack str {size}", unpack(pack("x" * size)) == "x" * size)
        c.check(f"msgpack bin {size}", unpack(pack(b"y" * size)) == b"y" * size)
    for size in (15, 16, 65536):
        c.check(f"msgpack array {size}", unpack(pack([1] * size)) == [1] * size)
        m = Pairs((str(i), i) for i in range(size))
        c.check(f"msgpack map {size}", unpack(pack(m)) == m)
    c.check("msgpack smallest int forms", pack(200) == b"\xcc\xc8"
            and pack(-5) == b"\xfb" and pack(70000) == b"\xce\x00\x01\x11\x70")
    c.check("msgpack float32", unpack(pack(Float32(0.5))) == 0.5
            and pack(Float32(0.5))[0] == 0xCA)
    c.check("msgpack float64", pack(0.5) == b"\xcb\x3f\xe0" + bytes(6))
    c.check("msgpack nil/bool", unpack(pack([None, True, False])) == [None, True, False])
    try:
        unpack(b"\xc1")
        c.check("msgpack 0xc1 refused", False, "accepted")
    except Malformed:
        c.check("msgpack 0xc1 refused", True)
    try:
        unpack(b"\xdd\xff\xff\xff\xff")
        c.check("msgpack huge array count refused", False, "accepted")
    except Malformed as exc:
        c.check("msgpack huge array count refused", exc.reason == TRUNCATED)


def _selftest_requests(c):
    res = c.request("request default", build_request(), True)
    c.check("request default fields", res["v"] == 1 and res["cursor"] is None
            and res["type"] == "sync_request" and res["max_nodes"] == 0)
    res = c.request("request with cursor",
                    build_request(TEST_CURSOR, 100, 2_097_152), True)
    c.check("request cursor round trip", res["cursor"] == TEST_CURSOR.hex()
            and res["max_nodes"] == 100 and res["max_bytes"] == 2_097_152)
    res = c.request("request clamps max_nodes", build_request(None, 2**40, 2**64 - 1), True)
    c.check("request clamp value", res["max_nodes"] == UINT32_MAX
            and res["max_bytes"] == UINT32_MAX)
    req = build_request()
    c.check("request encoding", req[4] == 0x85 and req[:4] == (len(req) - 4).to_bytes(4, "big"))
    c.request("request cursor 40 bytes", build_request(b"\1" * 40), False,
              "Malformed sync request (malformed data)")
    c.request("request cursor 42 bytes", build_request(b"\1" * 42), False,
              "Malformed sync request (malformed data)")
    c.request("request v 2", build_request(version=2), False,
              "UnsupportedVersion: Unsupported sync protocol version 2")
    c.request("request v 2, rest broken",
              _test_msg([("type", "sync_request"), ("v", 2), ("cursor", 5)]),
              False, "UnsupportedVersion")
    c.request("request v 2 after a badly typed entry",
              _test_msg([("type", 5), ("cursor", b"abc"), ("v", 2)]),
              False, "UnsupportedVersion")
    c.request("request v 2 after an unskippable entry",
              _test_msg([("x", Raw(b"\xc1")), ("v", 2)]), False,
              "Malformed sync request (malformed data)")
    c.request("request v 2 after a too deep entry",
              _test_msg([("x", Raw(b"\x91" * 33 + b"\x01")), ("v", 2)]), False,
              "Malformed sync request (malformed data)")
    c.request("request v 2 after a non-str key",
              _test_msg([(1, 2), ("v", 2)]), False, "Malformed sync request")
    c.request("request v float", _test_msg([("type", "sync_request"), ("v", 1.0)]),
              False, "Malformed sync request (malformed data)")
    c.request("request unknown type", build_request(type_name="sync_requests"),
              False, "Malformed sync request")
    c.request("request of another type", build_error("X", "y"), False,
              "Expected sync_request, got error")
    c.request("request zero length", frame(b"", 0), False,
              "Subscriber sent a malformed frame (zero length)")
    c.request("request oversized", frame(b"", MAX_REQUEST_FRAME + 1), False,
              "Subscriber sent a frame of 65537 bytes, above the limit of 65536 bytes")
    c.request("request empty stream", b"", False, "Stream ended before a request")
    c.request("request cut", build_request()[:10], False, "Stream ended inside a frame")
    c.request("request then data", build_request() + build_request(), False,
              "Unexpected data after the request")
    big = _test_msg([("type", "sync_request"), ("v", 1), ("pad", "x" * 65_400)])
    c.request("request of 65536 bytes or less", big, len(big) - 4 <= 65_536)


def _selftest_pages(c):
    specs = [{"content": f"node {i}", "source": "note:t", "source_type": "note",
              "timestamp": i, "project": "/a/proj"} for i in range(5)]
    res = c.stream("round trip 5 nodes / 2 per page",
                   build_response(specs, 2), True, done=True, error=None)
    c.check("round trip pages", [p["nodes"] for p in res["pages"]] == [2, 2, 1]
            and [p["has_more"] for p in res["pages"]] == [True, True, False])
    c.check("round trip cursor seq", [split_cursor(bytes.fromhex(p["new_cursor"]))["seq"]
                                      for p in res["pages"]] == [2, 4, 5])
    c.check("round trip content", [n["content"] for n in res["nodes"]]
            == [s["content"] for s in specs])
    c.check("round trip hashes", all(n["hash_ok"] is True for n in res["nodes"]))
    c.check("round trip key order", res["nodes"][0]["keys"] == list(NODE_KEY_ORDER[:10]))
    ids = [bytes.fromhex(n["id"]) for n in res["nodes"]]
    c.check("generated ids are UUID v4", all(i[6] >> 4 == 4 and i[8] >> 6 == 2 for i in ids)
            and len(set(ids)) == 5)
    c.stream("zero nodes: one page", build_response([]), True, done=True,
             pages=[{"nodes": 0, "has_more": False,
                     "new_cursor": make_cursor(RESPONSE_EPOCH, 0, share_digest([])).hex()}])
    res = c.stream("bad hash is not a violation",
                   build_response(specs[:1], hash_mode="bad"), True, done=True)
    c.check("bad hash reported", res["nodes"][0]["hash_ok"] is False)
    res = c.stream("no hash", build_response(specs[:1], hash_mode="none"), True)
    c.check("no hash reported", res["nodes"][0]["hash_ok"] is None
            and res["nodes"][0]["hash_given"] is None)
    meta = dict(specs[0], metadata={"tags": ["x"]})
    res = c.stream("metadata", build_response([meta]), True)
    c.check("metadata kept", res["nodes"][0]["metadata"] == '{"tags":["x"]}'
            and res["nodes"][0]["keys"][-1] == "metadata")
    c.stream("shared roots ok", build_response(specs[:1]), True,
             shared=["/a/proj"])
    c.stream("shared beneath a root", _test_page([_test_node({"project": "/a/proj/x"})]),
             True, shared=["/a/proj"])
    c.stream("not shared on a path boundary",
             _test_page([_test_node({"project": "/a/proj-x"})]), False,
             "not a shared root", shared=["/a/proj"])
    # ERROR
    res = c.stream("error only", build_error("RateLimited",
                   "Too many concurrent syncs; try again later"), True, done=False)
    c.check("error fields", res["error"] == {
        "code": "RateLimited", "message": "Too many concurrent syncs; try again later"})
    c.stream("pages then error", _test_page([_test_node()], True)
             + build_error("Internal", "x"), True, done=False)
    c.stream("error without message",
             _test_msg([("type", "error"), ("v", 1), ("code", "X")]), True,
             error={"code": "X", "message": None})
    c.stream("error code empty", build_error("", "x"), False, "malformed message")
    c.stream("error code 32 bytes", build_error("C" * 32, "x"), False, "malformed")
    c.stream("error message 4097 bytes", build_error("X", "m" * 4097), False,
             "(malformed data)")
    c.stream("error message with NUL", build_error("X", "a\0b"), False, "NUL")
    c.stream("data after error", build_error("X", "y") + _test_page(), False,
             "after its ERROR")
    # sequence
    c.stream("FIN before the last page", _test_page(has_more=True), False,
             "stream ended before the last page")
    c.stream("empty stream", b"", False, "stream ended before the last page")
    c.stream("bytes after the last page", _test_page() + b"\0", False,
             "publisher sent data after the last page")
    c.stream("page after the last page", _test_page() + _test_page(), False,
             "publisher sent data after the last page")
    c.stream("FIN inside the length", _test_page(has_more=True) + b"\0\0", False,
             "stream ended inside a frame")
    c.stream("FIN inside the payload", _test_page()[:-3], False,
             "stream ended inside a frame")
    c.stream("zero-length frame", frame(b"", 0), False,
             "publisher sent a malformed frame (zero length)")
    c.stream("oversized length", frame(b"", MAX_FRAME + 1), False,
             "publisher sent a frame of 16777217 bytes, above the limit of "
             "16777216 bytes")
    c.stream("16 MiB length, cut", frame(b"\x80", MAX_FRAME), False,
             "stream ended inside a frame")
    c.stream("unexpected sync_request", build_request(), False,
             "unexpected sync_request message from the publisher")
    c.stream("unexpected export_header", _test_msg(
        [("type", "export_header"), ("v", 1), ("node_id", "ab"), ("full", True)]),
        False, "unexpected export_header message")


def _selftest_messages(c):
    c.stream("unknown type string", _test_msg([("type", "sync_reply"), ("v", 1),
                                               ("new_cursor", TEST_CURSOR)]),
             False, "malformed message from the publisher (malformed data)")
    c.stream("v 2", _test_page(extra=[("v", 2)]), False,
             "publisher answered with sync protocol version 2; this build speaks version 1")
    c.stream("v 2 before a broken entry", _test_msg(
        [("type", "sync_response"), ("v", 2), ("has_more", 1)]), False,
        "sync protocol version 2")
    c.stream("v 0", _test_page(extra=[("v", 0)]), False, "version 0")
    c.stream("no v", _test_msg([("type", "sync_response"),
                                ("new_cursor", TEST_CURSOR)]), False, "no `v`")
    c.stream("no type", _test_msg([("v", 1), ("new_cursor", TEST_CURSOR)]),
             False, "no `type`")
    c.stream("float for v", _test_page(extra=[("v", 1.0)]), False, "`v` must be")
    c.stream("negative v", _test_page(extra=[("v", -1)]), False, "`v` must be")
    c.stream("int for has_more", _test_msg([("type", "sync_response"), ("v", 1),
              ("new_cursor", TEST_CURSOR), ("has_more", 0)]), False, "has_more")
    c.stream("new_cursor 40 bytes", _test_page(cursor=b"c" * 40), False,
             "malformed message from the publisher (malformed data)")
    c.stream("new_cursor 42 bytes", _test_page(cursor=b"c" * 42), False, "not 41")
    c.stream("new_cursor nil", _test_page(cursor=None), False, "new_cursor")
    c.stream("new_cursor missing", _test_msg([("type", "sync_response"), ("v", 1)]),
             False, "new_cursor")
    c.stream("cursor key stands for new_cursor", _test_page(cursor_key="cursor"), True)
    c.stream("last of cursor/new_cursor wins",
             _test_page(extra=[("cursor", None)]), False, "new_cursor")
    c.stream("known key type-checked in any message",
             _test_msg([("type", "error"), ("v", 1), ("code", "X"),
                        ("max_nodes", -1)]),
             False, "max_nodes")
    c.stream("trailing bytes in the payload", frame(pack(Pairs(
        [("type", "sync_response"), ("v", 1), ("new_cursor", TEST_CURSOR)])) + b"\xc0"),
        False, "bytes after the map")
    c.stream("payload not a map", frame(pack([1, 2])), False, "must be a map")
    c.stream("non-str key", _test_page(extra=[(1, 2)]), False, "not a str")
    c.stream("bin key", _test_page(extra=[(b"k", 2)]), False, "not a str")
    c.stream("payload cut inside", frame(pack(Pairs([("type", "sync_response")]))[:-2]),
             False, "(data ends early (truncated))")
    c.stream("map claims more entries", frame(b"\x8f\xa1v\x01"), False,
             "(data ends early (truncated))")
    c.stream("unknown keys skipped", _test_page(extra=[
        ("future", Pairs([("a", [1.5, None, b"x"]), ("b", Raw(b"\xd4\x01\x02"))])),
        ("later", Raw(b"\xc7\x03\x05abc"))]), True)
    c.stream("v 2 after a badly typed entry", _test_msg(
        [("type", 5), ("new_cursor", b"x"), ("v", 2)]), False,
        "sync protocol version 2")
    c.stream("v 2 after an unskippable entry", _test_msg(
        [("x", Raw(b"\xc1")), ("v", 2)]), False, "(malformed data)")
    c.stream("any key type inside a skipped value", _test_page(extra=[
        ("x", Raw(b"\x82\x01\x02\xc4\x01k\xc0"))]), True)
    c.stream("error code need not be UTF-8", _test_msg(
        [("type", "error"), ("v", 1), ("code", RawStr(b"\xff\xfe"))]), True)
    ok_depth = Raw(b"\x91" * 32 + b"\x01")      # the 1 lies 32 levels below
    bad_depth = Raw(b"\x91" * 33 + b"\x01")     # 33 levels
    c.stream("skipped value 32 levels deep", _test_page(extra=[("x", ok_depth)]), True)
    c.stream("skipped value 33 levels deep", _test_page(extra=[("x", bad_depth)]),
             False, "deeper than 32")
    c.stream("skipped maps 33 levels deep", _test_page(extra=[
        ("x", Raw(b"\x81\xa1k" * 33 + b"\x01"))]), False, "deeper than 32")
    c.stream("empty array at level 32", _test_page(extra=[
        ("x", Raw(b"\x91" * 32 + b"\x90"))]), True)
    c.stream("nodes repeated after non-empty", _test_page(
        [_test_node()], extra=[("nodes", [])]), False, "repeated")
    c.stream("nodes repeated after empty", _test_msg(
        [("type", "sync_response"), ("v", 1), ("new_cursor", TEST_CURSOR),
         ("nodes", []), ("nodes", [_test_node()])]), True)
    c.stream("type repeated: last wins", _test_page(
        extra=[("type", "sync_request")]), False, "unexpected sync_request")
    node = pack(_test_node())
    c.stream("1000 nodes", _test_page([Raw(node)] * 1000), True)
    c.stream("1001 nodes", _test_page([Raw(node)] * 1001), False,
             "malformed message from the publisher (input too large)")


def _selftest_nodes(c):
    def node_case(name, node, ok, problem=None):
        c.stream(name, _test_page([node]), ok, problem)

    node_case("valid node", _test_node(), True)
    for key in NODE_NO_REPEAT:
        k = key.decode()
        value = dict(_test_node())[k]
        node_case(f"repeated `{k}`", _test_node(extra=[(k, value)]), False, "repeated")
    node_case("repeated project: last wins", _test_node(extra=[("project", "/b")]), True)
    for key in NODE_REQUIRED:
        node_case(f"missing `{key.decode()}`", _test_node(drop=[key.decode()]), False,
                  "has no")
    node_case("node not a map", [1], False, "must be a map")
    node_case("non-str node key", _test_node(extra=[(7, 1)]), False, "not a str")
    node_case("unknown node key skipped", _test_node(extra=[("extra", [1, {"a": 2}])]), True)
    node_case("node unknown key 33 levels", _test_node(
        extra=[("extra", Raw(b"\x91" * 33 + b"\xc0"))]), False, "deeper than 32")
    node_case("float timestamp", _test_node({"timestamp": 1.0}), False, "timestamp")
    node_case("negative timestamp", _test_node({"timestamp": -5}), True)
    node_case("timestamp above int64", _test_node({"timestamp": 2**63}), False, "int64")
    node_case("float chunk_index", _test_node({"chunk_index": 1.0}), False, "chunk_index")
    node_case("chunk_index 2^32-1", _test_node({"chunk_index": UINT32_MAX}), True)
    node_case("chunk_index 2^32", _test_node({"chunk_index": 2**32}), False, "chunk_index")
    node_case("negative chunk_index", _test_node({"chunk_index": -1}), False, "chunk_index")
    node_case("confidence float32", _test_node({"confidence": Float32(0.25)}), True)
    node_case("confidence int 1", _test_node({"confidence": 1}), True)
    node_case("confidence 1.5", _test_node({"confidence": 1.5}), False, "confidence")
    node_case("confidence -0.1", _test_node({"confidence": -0.1}), False, "confidence")
    node_case("confidence NaN", _test_node({"confidence": float("nan")}), False, "NaN")
    node_case("confidence inf", _test_node({"confidence": float("inf")}), False,
              "confidence")
    node_case("confidence str", _test_node({"confidence": "1"}), False, "confidence")
    node_case("id 15 bytes", _test_node({"id": b"i" * 15}), False, "`nodes[0].id`")
    node_case("id as str", _test_node({"id": "i" * 16}), False, "`nodes[0].id`")
    node_case("hash 31 bytes", _test_node({"hash": b"h" * 31}), False, "hash")
    node_case("source_type blog", _test_node({"source_type": "blog"}), False,
              "source_type")
    node_case("source_type session", _test_node({"source_type": "session"}), True)
    node_case("content as bin", _test_node({"content": b"hello"}), False, "content")
    node_case("metadata nil", _test_node(extra=[("metadata", None)]), True)
    node_case("metadata int", _test_node(extra=[("metadata", 3)]), False, "metadata")
    node_case("empty strings", _test_node({"content": "", "source": "",
                                           "project": "", "namespace": ""}), True)
    res = decode_stream(_test_page([_test_node({"namespace": ""}, drop=["project"])]))
    c.check("namespace \"\" reads personal, project absent reads \"\"",
            res["nodes"][0]["namespace"] == "personal" and res["nodes"][0]["project"] == "")
    bad_utf8 = {"NUL": b"a\0b", "overlong /": b"\xc0\xaf", "overlong 3-byte": b"\xe0\x80\xaf",
                "surrogate": b"\xed\xa0\x80", "above U+10FFFF": b"\xf4\x90\x80\x80",
                "lone continuation": b"\x80", "cut sequence": b"\xe2\x82"}
    for field in ("content", "source", "project", "namespace", "metadata"):
        for label, raw in bad_utf8.items():
            node = _test_node(drop=[field], extra=[(field, RawStr(raw))])
            node_case(f"{label} in {field}", node, False,
                      "NUL" if label == "NUL" else "not valid UTF-8")
    node_case("4-byte UTF-8", _test_node({"content": "\U0001F600 \u00e9"}), True)
    node_case("U+10FFFF", _test_node(extra=[("metadata", RawStr(b"\xf4\x8f\xbf\xbf"))]), True)
    node_case("content 1 MiB", _test_node({"content": "c" * MAX_CONTENT}), True)
    node_case("content 1 MiB + 1", _test_node({"content": "c" * (MAX_CONTENT + 1)}),
              False, "(input too large)")
    node_case("source 65537", _test_node({"source": "s" * 65_537}), False,
              "(input too large)")
    overhead = len(pack(_test_node(extra=[("pad", b"p" * 70_000)]))) - 70_000
    pad = MAX_NODE_ENCODED - overhead  # a bin32 header either way
    node_case("node of 1311744 bytes", _test_node(extra=[("pad", b"p" * pad)]), True)
    node_case("node of 1311745 bytes", _test_node(extra=[("pad", b"p" * (pad + 1))]),
              False, "(input too large)")


def _selftest_cursor(c):
    c.check("share digest of /a/proj", share_digest([b"/a/proj"]).hex()
            == "c5059f04b140d5a64a3c20c796edc6f9")
    c.check("share digest sorted and deduplicated",
            share_digest([b"/b", b"/a", b"/b"]) == share_digest([b"/a", b"/b"]))
    c.check("share digest size", len(share_digest([])) == 16)
    fields = split_cursor(TEST_CURSOR)
    c.check("cursor layout", len(TEST_CURSOR) == 41 and fields == {
        "layout": 1, "epoch": b"selftest-epoch-1".hex(), "seq": 7,
        "share_digest": "c5059f04b140d5a64a3c20c796edc6f9"})
    c.check("is_shared", is_shared("/a/proj", ["/a/proj"])
            and is_shared("/a/proj/x", ["/a/proj"])
            and not is_shared("/a/proj-x", ["/a/proj"])
            and not is_shared("/a", ["/a/proj"]) and is_shared("/x", ["/"]))


def _selftest_corpus(c):
    """Real bytes from the C implementation, when the fuzz corpus is there
    (single messages without a length prefix; export files)."""
    corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "..", "fuzz", "corpus")
    path = os.path.join(corpus, "sync_msg", "response")
    if os.path.exists(path):
        with open(path, "rb") as f:
            msg = decode_message(f.read())
        c.check("corpus sync_msg/response", msg.type == b"sync_response"
                and len(msg.nodes) == 2
                and all(n.values[b"hash"] == content_hash(n.values[b"content"])
                        for n in msg.nodes))
    path = os.path.join(corpus, "exchange", "full_one_node.dsx")
    if os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
        pos, types = 0, []
        while pos < len(data):
            payload, pos = read_frame(data, pos, MAX_FRAME)
            types.append(decode_message(payload).type)
        c.check("corpus export file frames", types == [
            b"export_header", b"sync_response", b"signature"])


def selftest():
    c = Checks()
    try:
        for part in (_selftest_codec, _selftest_requests, _selftest_pages,
                     _selftest_messages, _selftest_nodes, _selftest_cursor,
                     _selftest_corpus):
            part(c)
    except SelftestFailure as exc:
        print(f"selftest: FAILED after {c.passed} checks: {exc}")
        return 1
    print(f"selftest: {c.passed} checks passed")
    return 0


# ------------------------------------------------------------------- CLI


def _hex(text, what):
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{what} is not hex: {text!r}") from None


def _emit_json(obj):
    sys.stdout.write(json.dumps(obj) + "\n")


def _write(data):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def cmd_request(args):
    cursor = None if args.cursor is None else _hex(args.cursor, "--cursor")
    _write(build_request(cursor, args.max_nodes, args.max_bytes, args.v, args.type))
    return 0


def cmd_frame(args):
    payload = _hex(args.payload_hex, "--payload-hex")
    if args.length is not None and not 0 <= args.length <= UINT32_MAX:
        raise UsageError("--length must fit in 4 bytes")
    _write(frame(payload, args.length))
    return 0


def cmd_decode(args):
    roots = args.shared if args.shared else None
    result = decode_stream(sys.stdin.buffer.read(), roots)
    _emit_json(result)
    return 0 if result["ok"] else 1


def cmd_decode_request(args):
    result = decode_request(sys.stdin.buffer.read())
    _emit_json(result)
    return 0 if result["ok"] else 1


def cmd_cursor(args):
    cursor = _hex(args.hex, "the cursor")
    if len(cursor) != CURSOR_LEN:
        print(f"ds_wire.py: a cursor is exactly 41 bytes, not {len(cursor)}",
              file=sys.stderr)
        return 1
    _emit_json({"length": len(cursor), "layout": cursor[0]})
    return 0


def cmd_share_digest(args):
    print(share_digest([os.fsencode(root) for root in args.roots]).hex())
    return 0


def cmd_response(args):
    try:
        with open(args.nodes_json, encoding="utf-8") as f:
            nodes = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {args.nodes_json}: {exc}") from None
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        raise UsageError("--nodes-json must hold a JSON array of objects")
    if args.page_nodes < 1:
        raise UsageError("--page-nodes must be at least 1")
    mode = "none" if args.no_hash else "bad" if args.bad_hash else "good"
    _write(build_response(nodes, args.page_nodes, mode))
    return 0


def cmd_error(args):
    _write(build_error(args.code, args.message))
    return 0


def cmd_selftest(args):
    return selftest()


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ds_wire.py",
        description="Documentation-derived ds-sync/1 frames and messages.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("request", help="one framed SYNC_REQUEST")
    p.add_argument("--cursor")
    p.add_argument("--max-nodes", type=int, default=0)
    p.add_argument("--max-bytes", type=int, default=0)
    p.add_argument("--v", type=int, default=PROTOCOL_VERSION)
    p.add_argument("--type", default="sync_request")
    p.set_defaults(func=cmd_request)

    p = sub.add_parser("frame", help="a raw frame")
    p.add_argument("--payload-hex", required=True)
    p.add_argument("--length", type=int)
    p.set_defaults(func=cmd_frame)

    p = sub.add_parser("decode", help="validate a publisher->subscriber stream")
    p.add_argument("--shared", action="append", metavar="ROOT")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("decode-request", help="validate one framed request")
    p.set_defaults(func=cmd_decode_request)

    p = sub.add_parser("cursor", help="the layout version of a 41-byte cursor")
    p.add_argument("hex")
    p.set_defaults(func=cmd_cursor)

    p = sub.add_parser("share-digest", help="the cursor's share digest")
    p.add_argument("roots", nargs="+", metavar="ROOT")
    p.set_defaults(func=cmd_share_digest)

    p = sub.add_parser("response", help="a stream of SYNC_RESPONSE pages")
    p.add_argument("--nodes-json", required=True, metavar="FILE")
    p.add_argument("--page-nodes", type=int, default=100, metavar="K")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--no-hash", action="store_true")
    group.add_argument("--bad-hash", action="store_true")
    p.set_defaults(func=cmd_response)

    p = sub.add_parser("error", help="one framed ERROR")
    p.add_argument("--code", required=True)
    p.add_argument("--message", required=True)
    p.set_defaults(func=cmd_error)

    p = sub.add_parser("selftest", help="run the built-in checks")
    p.set_defaults(func=cmd_selftest)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ValueError) as exc:
        print(f"ds_wire.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
