"""The one writer and reader of ebgc's sealed Python containers: stream messages and saved states
(stream.py), state dicts (torch.py) and the APPFL payload (integrations/appfl.py). Tensor blobs
inside them are the native core's (format/container.hpp).

A sealed container is ``magic (4) | version (u8) | body | CRC-32C (u32) of every byte before it``.
Integers are little-endian, ``varint`` is unsigned LEB128. The reader checks every length against
the bytes present before it takes them, decodes names as strict UTF-8 within a length limit, keeps
ndim <= 32 and every shape within the format's limits, and checks a shape's size against the bytes
it describes before any array is made, so every failure is a :class:`FormatError` (never an
allocation, a crash or another exception type).
"""
from __future__ import annotations

import math
import struct
from typing import Any, Iterable, Optional, Sequence, Tuple

import numpy as np

from . import _core
from .errors import ArgumentTypeError, ChecksumError, FormatError, InvalidArgumentError, VersionError
from .vocabulary import MAX_ELEMENTS

MAX_NDIM = 32
MAX_NAME = 1024


def varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


class Writer:
    """Builds a container body; :meth:`seal` adds the CRC."""

    def __init__(self, magic: bytes = b"", version: Optional[int] = None):
        self.buf = bytearray(magic)
        if version is not None:
            self.buf.append(version)
        self._parts: list = []  # (position in buf, part) of parts held elsewhere

    def u8(self, v: int) -> "Writer":
        self.buf.append(v)
        return self

    def u32(self, v: int) -> "Writer":
        self.buf += struct.pack("<I", v)
        return self

    def f64(self, v: float) -> "Writer":
        self.buf += struct.pack("<d", v)
        return self

    def varint(self, v: int) -> "Writer":
        self.buf += varint(v)
        return self

    def raw(self, b: Any) -> "Writer":
        self.buf += b
        return self

    def blob(self, b: Any) -> "Writer":
        """Length-prefixed bytes."""
        self.buf += varint(len(b))
        self.buf += b
        return self

    def name(self, s: str) -> "Writer":
        return self.blob(s.encode("utf-8"))

    def short_bytes(self, b: bytes) -> "Writer":
        """Bytes with a u8 length (stream ids)."""
        self.buf.append(len(b))
        self.buf += b
        return self

    def shape(self, shape: Sequence[int]) -> "Writer":
        """u8 ndim, then one varint per dimension."""
        self.buf.append(len(shape))
        for d in shape:
            self.buf += varint(int(d))
        return self

    def array(self, a: np.ndarray) -> "Writer":
        """The raw bytes of an array in C order (its dtype and shape travel separately)."""
        self.buf += memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
        return self

    def part(self, b: Any) -> "Writer":
        """Length-prefixed bytes that stay where they are (a blob in GPU memory): a body with parts
        is sealed where they are, from :meth:`pieces`."""
        self.buf += varint(len(b))
        self._parts.append((len(self.buf), b))
        return self

    def pieces(self) -> list:
        """The body in order: host bytes, then each part and the host bytes after it."""
        out, at = [], 0
        for pos, part in self._parts:
            out += [bytes(self.buf[at:pos]), part]
            at = pos
        return out + [bytes(self.buf[at:])]

    def seal(self) -> bytes:
        if self._parts:
            raise InvalidArgumentError("a body with parts held elsewhere is sealed where they are")
        self.buf += struct.pack("<I", _core.crc32c(self.buf))
        return bytes(self.buf)


def _view(data: Any, what: str) -> memoryview:
    if isinstance(data, str):
        raise ArgumentTypeError(f"{what} must be bytes-like, not str")
    try:
        view = memoryview(data)  # bytes, bytearray, memoryview, uint8 arrays, ...
    except TypeError:
        raise ArgumentTypeError(f"{what} must be bytes-like, not {type(data).__name__}") from None
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    return view


class Reader:
    """Bounds-checked reads over one container's body; every failure is a FormatError."""

    def __init__(self, data: memoryview, what: str, version: int = 0):
        self.data, self.pos, self.what, self.version = data, 0, what, version

    @classmethod
    def open(cls, data: Any, magic: bytes, versions: Iterable[int], what: str,
             unsealed: Iterable[int] = ()) -> "Reader":
        """A reader past the magic and version of a container, whose CRC is checked (the reader
        ends before it) unless its version is one of `unsealed` (layouts written without one)."""
        view = _view(data, what)
        version = _check_head(bytes(view[:5]), len(view), magic, versions, what)
        if version not in tuple(unsealed):
            if len(view) < 9 or _core.crc32c(view[:-4]) != struct.unpack("<I", view[-4:])[0]:
                raise ChecksumError(f"{what} checksum mismatch (truncated or corrupted)")
            view = view[:-4]
        r = cls(view, what, version)
        r.pos = 5
        return r

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def take(self, n: int, field: str) -> memoryview:
        if n < 0 or n > self.remaining:
            raise FormatError(f"truncated {self.what}: {field} runs past the end")
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v

    def rest(self) -> memoryview:
        return self.take(self.remaining, "rest")

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u32(self, field: str) -> int:
        return struct.unpack("<I", self.take(4, field))[0]

    def f64(self, field: str) -> float:
        return struct.unpack("<d", self.take(8, field))[0]

    def varint(self, field: str) -> int:
        v = shift = 0
        for _ in range(10):
            b = self.u8(field)
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                if v >= 1 << 64:
                    break
                return v
            shift += 7
        raise FormatError(f"malformed varint in {self.what} ({field})")

    def count(self, field: str, min_bytes_each: int = 1) -> int:
        """A count of items that take at least `min_bytes_each` bytes each: bounded by the bytes left."""
        n = self.varint(field)
        if n * min_bytes_each > self.remaining:
            raise FormatError(f"{field} larger than the {self.what} can hold")
        return n

    def blob(self, field: str, limit: Optional[int] = None) -> memoryview:
        n = self.varint(field)
        if limit is not None and n > limit:
            raise FormatError(f"{field} longer than {limit} bytes in {self.what}")
        return self.take(n, field)

    def payload(self, field: str) -> Any:
        """A length-prefixed part handed on whole (a tensor blob): a view here; a
        :class:`FetchingReader` leaves it where the container is."""
        return self.blob(field)

    def sub(self, field: str) -> "Reader":
        """A reader over a length-prefixed part."""
        return Reader(self.blob(field), self.what, self.version)

    def text(self, raw: Any, field: str) -> str:
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{field} in {self.what} is not UTF-8") from None

    def name(self, field: str = "name", limit: int = MAX_NAME) -> str:
        """A non-empty UTF-8 name of at most `limit` bytes."""
        raw = self.blob(field, limit)
        if not len(raw):
            raise FormatError(f"empty {field} in {self.what}")
        return self.text(raw, field)

    def short_bytes(self, field: str, limit: int) -> bytes:
        n = self.u8(f"{field} length")
        if not 1 <= n <= limit:
            raise FormatError(f"bad {field} length in {self.what}")
        return bytes(self.take(n, field))

    def shape(self, field: str = "shape") -> Tuple[int, ...]:
        """u8 ndim (<= 32) then the dimensions, each and their product (zeros aside) <= 2**40."""
        ndim = self.u8("ndim")
        if ndim > MAX_NDIM:
            raise FormatError(f"{ndim} dimensions in {self.what} (at most {MAX_NDIM})")
        shape, n = [], 1
        for _ in range(ndim):
            d = self.varint(field)
            if d:
                n *= d
            if d > MAX_ELEMENTS or n > MAX_ELEMENTS:
                raise FormatError(f"{field} too large in {self.what}")
            shape.append(d)
        return tuple(shape)

    def array(self, dtype: np.dtype, shape: Tuple[int, ...], field: str, raw: Optional[memoryview] = None) -> np.ndarray:
        """A copy of an array of `shape` read from the next bytes (or from `raw`, which must hold
        exactly its bytes); the size is checked before anything is allocated."""
        nbytes = math.prod(shape) * dtype.itemsize
        if raw is None:
            raw = self.take(nbytes, field)
        elif len(raw) != nbytes:
            raise FormatError(f"{field} in {self.what}: data size does not match its shape")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()

    def end(self) -> None:
        if self.pos != self.size:
            raise FormatError(f"trailing bytes in {self.what}")


def _check_head(head: bytes, size: int, magic: bytes, versions: Iterable[int], what: str) -> int:
    """The version of a sealed container of `size` bytes that starts with `head` (its first 5)."""
    if size < 4 or head[:4] != magic:
        raise FormatError(f"not an ebgc {what} (bad magic bytes)")
    if size < 5:
        raise FormatError(f"truncated {what}")
    if head[4] not in tuple(versions):
        raise VersionError(f"unsupported {what} version {head[4]}")
    return head[4]


class FetchingReader(Reader):
    """A :class:`Reader` over a sealed container the host reads only by copies (one held in GPU
    memory): the checksum is computed where the bytes are, the fields are fetched in small windows,
    and :meth:`payload` parts stay where they are. `source` has ``size``, ``fetch(begin, end)``
    (bytes), ``crc32c(end)`` (of its first `end` bytes) and ``part(begin, end)``."""

    WINDOW = 4096

    def __init__(self, source: Any, what: str, version: int = 0):
        super().__init__(memoryview(b""), what, version)
        self.source, self._size = source, int(source.size)
        self._window_at, self._window = 0, b""

    @classmethod
    def open(cls, source: Any, magic: bytes, versions: Iterable[int], what: str,  # type: ignore[override]
             unsealed: Iterable[int] = ()) -> "FetchingReader":
        size = int(source.size)
        version = _check_head(source.fetch(0, min(size, 5)), size, magic, versions, what)
        if version in tuple(unsealed):
            raise VersionError(f"{what} version {version} is read from host memory only")
        if size < 9 or source.crc32c(size - 4) != struct.unpack("<I", source.fetch(size - 4, size))[0]:
            raise ChecksumError(f"{what} checksum mismatch (truncated or corrupted)")
        r = cls(source, what, version)
        r._size, r.pos = size - 4, 5
        return r

    @property
    def size(self) -> int:
        return self._size

    def take(self, n: int, field: str) -> memoryview:
        if n < 0 or n > self.remaining:
            raise FormatError(f"truncated {self.what}: {field} runs past the end")
        at = self.pos - self._window_at
        if at < 0 or at + n > len(self._window):  # n <= remaining: never past the container
            self._window_at, at = self.pos, 0
            self._window = self.source.fetch(self.pos, min(self.size, self.pos + max(n, self.WINDOW)))
        self.pos += n
        return memoryview(self._window)[at : at + n]

    def payload(self, field: str) -> Any:
        n = self.varint(field)
        if n > self.remaining:
            raise FormatError(f"truncated {self.what}: {field} runs past the end")
        part = self.source.part(self.pos, self.pos + n)
        self.pos += n
        return part
