"""A small independent reader/writer of the ebgc v1 container (docs/FORMAT.md), for crafting blobs.

Layout (little-endian):
    "EBGC" | version u8 | flags u8 | dtype u8 | mode u8 | predictor u8 | coder u8 | chunk_log2 u8
    | ndim u8 | ndim x varint dim | error_bound f64 | abs_bound f64 | [coefficients or low-rank factors] | payload_size varint
    | payload | CRC-32C (u32) of every byte before it
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAGIC = b"EBGC"
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "float16", 4: "bfloat16"}  # dtype code -> name
ITEMSIZE = {1: 4, 2: 8, 3: 2, 4: 2}
HEADER_FIXED = 12  # magic, version, flags, dtype, mode, predictor, coder, chunk_log2, ndim


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ _T[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def read_varint(b: bytes, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        c = b[pos]
        pos += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, pos


@dataclass
class Blob:
    version: int
    flags: int
    dtype: int
    mode: int
    predictor: int
    coder: int
    chunk_log2: int
    shape: list = field(default_factory=list)
    error_bound: float = 0.0
    abs_bound: float = 0.0
    payload: bytes = b""
    payload_size: int | None = None  # None: len(payload)
    ndim: int | None = None  # None: len(shape)
    predictor_data: bytes = b""  # coefficients (predictors 1, 2) or low-rank factors (3, 4), as stored

    def header_bytes(self) -> bytes:
        h = bytearray(MAGIC)
        h += bytes([self.version, self.flags, self.dtype, self.mode, self.predictor, self.coder,
                    self.chunk_log2, len(self.shape) if self.ndim is None else self.ndim])
        for d in self.shape:
            h += varint(d)
        h += struct.pack("<dd", self.error_bound, self.abs_bound)
        h += self.predictor_data
        h += varint(len(self.payload) if self.payload_size is None else self.payload_size)
        return bytes(h)

    def to_bytes(self) -> bytes:
        body = self.header_bytes() + self.payload
        return seal(body)


def seal(body: bytes) -> bytes:
    """body + its CRC-32C."""
    return body + struct.pack("<I", crc32c(body))


def reseal(blob: bytes) -> bytes:
    """Recompute the trailing checksum of a (possibly modified) blob."""
    return seal(bytes(blob[:-4]))


def mutated(blob: bytes, at: int, value: int) -> bytes:
    """blob with byte `at` set to `value` and its checksum recomputed, so the change reaches the parser."""
    b = bytearray(blob)
    b[at] = value
    return reseal(bytes(b))


def parse(blob: bytes) -> Blob:
    assert blob[:4] == MAGIC
    version, flags, dtype, mode, predictor, coder, chunk_log2, ndim = blob[4:12]
    pos = 12
    shape = []
    for _ in range(ndim):
        d, pos = read_varint(blob, pos)
        shape.append(d)
    eb, ab = struct.unpack_from("<dd", blob, pos)
    pos += 16
    start = pos
    if predictor in (1, 2):
        pos += 8 * predictor
    elif predictor in (3, 4):
        n = 1
        for d in shape:
            n *= d
        sides = shape[0] + n // shape[0]  # rows + cols
        rank = blob[pos]
        if predictor == 3:  # rank, per component two f32 scales, then int16 factors
            pos += 1 + rank * (8 + 2 * sides)
        else:  # rank, per component u8 width and two f32 scales, then packed factors
            total_bits = sum(blob[pos + 1 + 9 * k] for k in range(rank))
            pos += 1 + 9 * rank + (total_bits * sides + 7) // 8
    predictor_data = bytes(blob[start:pos])
    psize, pos = read_varint(blob, pos)
    payload = bytes(blob[pos:pos + psize])
    assert pos + psize + 4 == len(blob), "payload_size disagrees with the blob length"
    assert struct.unpack_from("<I", blob, len(blob) - 4)[0] == crc32c(bytes(blob[:-4])), "bad CRC"
    return Blob(version, flags, dtype, mode, predictor, coder, chunk_log2, shape, eb, ab, payload,
                predictor_data=predictor_data)


def header_length(blob: bytes) -> int:
    """Offset of the first payload byte."""
    b = parse(blob)
    return len(b.header_bytes())


def directory_offset(b: Blob) -> int:
    """Offset, inside b.payload, of the chunk directory (after the outliers and coder tables)."""
    p = b.payload
    itemsize = ITEMSIZE[b.dtype]
    count, pos = read_varint(p, 0)
    for _ in range(count):
        _, pos = read_varint(p, pos)
    pos += count * itemsize
    if b.coder == 2:  # huffman: varint alphabet, 4-bit lengths
        alphabet, pos = read_varint(p, pos)
        pos += (alphabet + 1) // 2
    elif b.coder in (3, 4):  # context (both layouts): u8 groups, 8-byte bucket map, varint nbytes,
        pos += 1 + 8         # tables, varint sign period, 7 u16 sign frequencies
        nbytes, pos = read_varint(p, pos)
        pos += nbytes
        _, pos = read_varint(p, pos)
        pos += 7 * 2
    return pos


def chunk_directory(b: Blob) -> tuple[int, list[tuple[int, int]], int]:
    """(offset of the directory in b.payload, [(len_a, len_b)] per chunk, offset of the streams)."""
    start = pos = directory_offset(b)
    n = 1
    for d in b.shape:
        n *= d
    chunks = -(-n // (1 << b.chunk_log2))
    lens = []
    for _ in range(chunks):
        la, pos = read_varint(b.payload, pos)
        lb, pos = read_varint(b.payload, pos)
        lens.append((la, lb))
    return start, lens, pos
