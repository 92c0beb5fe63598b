"""A batch of Connection records as packed bytes: how the record store (track/spill.py) holds them.

Why: every record of a capture is written to its store once and read back on every pass over it
(the judge's, the JSON list's, a conn.log's). As pickles of flattened records that cost ~25% of a
200k-session analysis, nearly all of it Python objects made and freed (the flat tuples, pickle's
memo). Packed, a batch is written and read in C (`_conntrack.pack_batch`/`unpack_batch`, the
peers of pack_batch_py/unpack_batch_py here, which write the same bytes and read them back to equal
records: tests/test_store_format.py), and each text repeated in the batch is written once and read
back as one shared object. docs/architecture.md ("The record store") has the measurements.

A batch (every integer little endian):

    header  "<4sBBHIQ"  magic b"DSRS", VERSION, form, 0, records, body bytes (after the header)
    body    form FORM_PACKED:  the value table, then each record
            form FORM_FLAT / FORM_OBJECTS:  one pickle of the flattened records (records.flatten)
            or of the records as they are (anything else: the tests' records)

    value table  "<I" entries, then each entry: a tag byte and
                 TAG_STR  "<I" length + the text's UTF-8 ("surrogatepass": a lone surrogate from a
                          hostile packet comes back as it was)
                 TAG_INT  "<q"
                 TAG_TUPLE "<I" n + n references ("<I", each to an earlier entry)
    a reference  "<I": the entry's index, or NONE for None

    record  RECORD: references uid, capture, vantage, client_ip, server_ip, history, conn_state,
            orig_l2, resp_l2, tunneled_from; the 16 integers (client_port ... synack_ack, 0 where
            None); a mask (bit i: integer i is None; bit 16: a dialogue follows); for each of the
            three note blocks its strings' reference and its data's length; then the three data
            blocks (raw), then the dialogue if any:
    dialogue DIALOGUE: references banner_text, banner_host, helo, reply_codes, commands, xclient,
            last_reply; integers banner_code, banner_frame, banner_ts_ns, xclient_frame,
            xclient_ts_ns (0 where None); a None mask over them; the three flags (bits 0-2:
            starttls_offered, starttls_started, xclient_offered).

The table holds each distinct value once, in the order a walk of the batch first meets it (record
by record, field by field, a tuple's items before the tuple), deduplicated by value: both writers
walk the same way, so they write the same bytes. A batch packs only when every value is of the
type its field holds in the records the trackers make (exact str, int within 64 bits, bool,
tuples of those nested at most DEPTH deep, a NoteBlock of bytes and strings, no PROXY header); pack_batch returns None for
any other batch, and the store pickles it (the form says which).
"""

from __future__ import annotations

import struct

from dsrdiag.track.records import _NOTE, Connection, NoteBlock, SmtpDialogue, _TYPES, _record_native

MAGIC = b"DSRS"
VERSION = 1
HEADER = struct.Struct("<4sBBHIQ")
FORM_OBJECTS, FORM_FLAT, FORM_PACKED = 0, 1, 2
TAG_STR, TAG_INT, TAG_TUPLE = 1, 2, 3
NONE = 0xFFFFFFFF
DEPTH = 8
"""Tuples nest at most this deep in a field (L2 paths: 2); deeper, the batch is pickled."""
RECORD = struct.Struct("<10I16qI6I")
DIALOGUE = struct.Struct("<7I5qBB")
_MAX_LEN = 0xFFFFFFFE
"""The longest text (bytes) or tuple an entry holds: the C writer's bound, so both pickle the same batches."""
_NOTE_SIZE = _NOTE.size
"""A note block's data is whole packed notes (records._NOTE): anything else is refused, not stored."""
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_TAG_LEN = struct.Struct("<BI")
_STR_FIELDS = (0, 1, 2, 3, 5, 10, 11, 19, 20, 29)
_INT_FIELDS = (4, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 18, 21, 22, 23, 24)
_D_REFS = (1, 2, 5, 6, 7, 11, 15)
_D_INTS = (0, 3, 4, 12, 13)
_D_FLAGS = (8, 9, 10)
_LOW, _HIGH = -(1 << 63), (1 << 63) - 1
_new = tuple.__new__


class BatchError(ValueError):
    """Bytes that are not a whole, well-formed batch (a damaged store file)."""


def pack_batch(batch: list) -> bytes | None:
    """The packed bytes of a batch of records (header included), or None when some value is not
    of its plain type (the store pickles that batch): in C when built (_conntrack.pack_batch),
    else pack_batch_py; DSRDIAG_TRACKER=python runs the reference."""
    native = _record_native()
    return pack_batch_py(batch) if native is None else native.pack_batch(batch, _TYPES)


def unpack_batch(data) -> list:
    """The records of one packed batch (header included); BatchError if it is damaged."""
    native = _record_native()
    return unpack_batch_py(data) if native is None else native.unpack_batch(data, _TYPES)


class _Unpackable(Exception):
    pass


def pack_batch_py(batch: list) -> bytes | None:
    table: list = []
    index: dict = {}

    def ref(v, depth=0) -> int:
        if v is None:
            return NONE
        t = type(v)
        if t is tuple:  # its items first (they are in the table already if the tuple is)
            if depth >= DEPTH:
                raise _Unpackable
            refs = [ref(x, depth + 1) for x in v]
            i = index.get(v)
            if i is not None:
                return i
            if len(refs) > _MAX_LEN:
                raise _Unpackable
            entry = _TAG_LEN.pack(TAG_TUPLE, len(refs)) + struct.pack(f"<{len(refs)}I", *refs)
        elif t is str:
            i = index.get(v)
            if i is not None:
                return i
            b = v.encode("utf-8", "surrogatepass")
            if len(b) > _MAX_LEN:
                raise _Unpackable
            entry = _TAG_LEN.pack(TAG_STR, len(b)) + b
        elif t is int and _LOW <= v <= _HIGH:
            i = index.get(v)
            if i is not None:
                return i
            entry = bytes((TAG_INT,)) + _I64.pack(v)
        else:
            raise _Unpackable
        if len(table) >= NONE - 2:  # the C writer's cap: an index must never read as NONE
            raise _Unpackable
        i = index[v] = len(table)
        table.append(entry)
        return i

    def ints(values) -> tuple[list, int]:
        out, mask = [], 0
        for bit, v in enumerate(values):
            if v is None:
                mask |= 1 << bit
                out.append(0)
            elif type(v) is not int or not _LOW <= v <= _HIGH:
                raise _Unpackable
            else:
                out.append(v)
        return out, mask

    records = []
    if len(batch) > 0xFFFFFFFF:
        return None
    try:
        for c in batch:
            if type(c) is not Connection or len(c) != 30:
                raise _Unpackable
            refs = [ref(c[k]) for k in _STR_FIELDS]
            nums, mask = ints(c[k] for k in _INT_FIELDS)
            notes, blobs = [], []
            for b in c[25:28]:
                if type(b) is not NoteBlock or type(b._data) is not bytes or type(b._strs) is not tuple \
                        or len(b._data) % _NOTE_SIZE or len(b._data) > 0xFFFFFFFF:
                    raise _Unpackable
                notes += (ref(b._strs), len(b._data))
                blobs.append(b._data)
            s = c.smtp
            tail = b""
            if s is not None:
                if type(s) is not SmtpDialogue or len(s) != 16 or s.proxy is not None:
                    raise _Unpackable
                drefs = [ref(s[k]) for k in _D_REFS]
                dnums, dmask = ints(s[k] for k in _D_INTS)
                flags = 0
                for bit, k in enumerate(_D_FLAGS):
                    if type(s[k]) is not bool:
                        raise _Unpackable
                    flags |= s[k] << bit
                tail = DIALOGUE.pack(*drefs, *dnums, dmask, flags)
                mask |= 1 << 16
            records.append(RECORD.pack(*refs, *nums, mask, *notes) + b"".join(blobs) + tail)
    except _Unpackable:
        return None
    body = b"".join([_U32.pack(len(table)), *table, *records])
    return HEADER.pack(MAGIC, VERSION, FORM_PACKED, 0, len(batch), len(body)) + body


def header(data) -> tuple[int, int, int]:
    """(form, records, body bytes) of a batch's first HEADER.size bytes; BatchError if they are not a header."""
    if len(data) < HEADER.size:
        raise BatchError("record store: a batch is cut short (in its header)")
    magic, version, form, _, count, size = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or form not in (FORM_OBJECTS, FORM_FLAT, FORM_PACKED):
        raise BatchError("record store: not a batch of this version (damaged store file)")
    return form, count, size


def unpack_batch_py(data) -> list:
    data = bytes(data)
    form, count, size = header(data)
    if form != FORM_PACKED:
        raise BatchError("record store: not a packed batch")
    if len(data) != HEADER.size + size:
        raise BatchError("record store: a batch's length is not what its header says")
    try:
        return _unpack(data, HEADER.size, count)
    except (struct.error, IndexError, UnicodeDecodeError):
        raise BatchError("record store: a damaged batch") from None


def _unpack(data: bytes, pos: int, count: int) -> list:
    end = len(data)
    (n,), pos = _U32.unpack_from(data, pos), pos + 4
    if n > end - pos:  # each entry takes at least a byte
        raise BatchError("record store: a damaged batch")
    values: list = []
    heights: list = []  # per entry: its tuple levels (0: a str or an int), at most DEPTH as the writers write
    for _ in range(n):
        tag = data[pos]
        if tag == TAG_INT:
            values.append(_I64.unpack_from(data, pos + 1)[0])
            heights.append(0)
            pos += 9
            continue
        if tag not in (TAG_STR, TAG_TUPLE):
            raise BatchError("record store: a damaged batch")
        (k,) = _U32.unpack_from(data, pos + 1)
        pos += 5
        if tag == TAG_STR:
            if k > end - pos:
                raise BatchError("record store: a damaged batch")
            values.append(data[pos:pos + k].decode("utf-8", "surrogatepass"))
            heights.append(0)
            pos += k
        else:
            if k > (end - pos) // 4:
                raise BatchError("record store: a damaged batch")
            here = len(values)
            refs = struct.unpack_from(f"<{k}I", data, pos)
            pos += 4 * k
            values.append(tuple(None if r == NONE else _earlier(values, r, here) for r in refs))
            h = 1 + max((heights[r] for r in refs if r != NONE), default=0)
            if h > DEPTH:  # deeper than the writers write: hash() of the record would recurse without bound
                raise BatchError("record store: a damaged batch (tuples nested deeper than the writers allow)")
            heights.append(h)

    def val(r):
        return None if r == NONE else values[r]

    out = []
    rec, dlg = RECORD.unpack_from, DIALOGUE.unpack_from
    for _ in range(count):
        f = rec(data, pos)
        pos += RECORD.size
        mask = f[26]
        if mask >> 17:
            raise BatchError("record store: a damaged batch")
        nums = [None if mask >> i & 1 else v for i, v in enumerate(f[10:26])]
        blocks = []
        for k in range(3):
            length = f[28 + 2 * k]
            if length > end - pos or length % _NOTE_SIZE:
                raise BatchError("record store: a damaged batch")
            strs = val(f[27 + 2 * k])
            if type(strs) is not tuple:
                raise BatchError("record store: a damaged batch")
            blocks.append(NoteBlock(data[pos:pos + length], strs))
            pos += length
        smtp = None
        if mask >> 16 & 1:
            d = dlg(data, pos)
            pos += DIALOGUE.size
            dmask, flags = d[12], d[13]
            if dmask >> 5 or flags >> 3:
                raise BatchError("record store: a damaged batch")
            v = [None] * 16
            for k, r in zip(_D_REFS, d[:7]):
                v[k] = val(r)
            for i, (k, x) in enumerate(zip(_D_INTS, d[7:12])):
                v[k] = None if dmask >> i & 1 else x
            for i, k in enumerate(_D_FLAGS):
                v[k] = bool(flags >> i & 1)
            smtp = _new(SmtpDialogue, v)
        s = [val(r) for r in f[:10]]
        out.append(_new(Connection, (s[0], s[1], s[2], s[3], nums[0], s[4], nums[1], nums[2], nums[3], nums[4], s[5], s[6],
                                     *nums[5:12], s[7], s[8], *nums[12:16], *blocks, smtp, s[9])))
    if pos != end:
        raise BatchError("record store: a batch's records do not fill it")
    return out


def _earlier(values: list, r: int, here: int):
    if r >= here:
        raise BatchError("record store: a damaged batch")
    return values[r]
