"""Frames: the unit on the wire between two parties.

A frame is a fixed 16-byte header followed by the payload (all header integers big-endian):

    offset  size  field
    0       4     magic           b"\\x89PIF"  (non-ASCII first byte: text protocols fail fast)
    4       1     version         FRAME_VERSION (1)
    5       1     message type    `MessageType`
    6       2     flags           bit 0 FLAG_ARRAY: the payload is an encoded numpy array
    8       8     payload length  bytes that follow the header
    16      n     payload

An array payload starts with its own small header so the receiver can check what it gets:

    0       1     dtype code      see `DTYPE_CODES` (bool, int8..uint64, float16..float64)
    1       1     ndim            0..MAX_NDIM
    2       2     reserved        0
    4       8*ndim  shape         one uint64 per dimension
    4+8*ndim      data            C order, little-endian

Nothing here touches a socket: `protocols.transport.channel` moves frames, this module only
packs and checks them.
"""
from __future__ import annotations

import enum
import math
import struct
import sys
from dataclasses import dataclass

import numpy as np

from protocols.transport.errors import FrameError, ProtocolError

MAGIC = b"\x89PIF"
FRAME_VERSION = 1
HEADER = struct.Struct("!4sBBHQ")
HEADER_SIZE = HEADER.size  # 16

DEFAULT_MAX_FRAME_SIZE = 1 << 30  # 1 GiB, header included
MIN_MAX_FRAME_SIZE = 64
MAX_MAX_FRAME_SIZE = 1 << 48

FLAG_ARRAY = 0x0001
KNOWN_FLAGS = FLAG_ARRAY

ARRAY_HEADER = struct.Struct("!BBH")
MAX_NDIM = 32


class MessageType(enum.IntEnum):
    """What a frame carries. The value is the type byte on the wire."""

    HELLO = 1          # session opening: roles, versions, plan digest (upper layers define it)
    SPEC = 2           # public description of the computation (plan / policy / shapes)
    DATA = 3           # opaque protocol bytes
    ARRAY = 4          # one numpy array (shares, masked values, labels) -- FLAG_ARRAY set
    PREPROCESSING = 5  # one-time correlated randomness (dealer material, offline messages)
    RESULT = 6         # the output for the client (output shares, logits, label)
    ERROR = 7          # UTF-8 reason; the receiver raises `RemoteError`
    BYE = 8            # orderly close; the receiver's next recv raises `PeerDisconnected`
    ACK = 9            # empty acknowledgement / barrier

    @classmethod
    def coerce(cls, value: object) -> MessageType:
        """A MessageType from a MessageType, its int value or its name; FrameError otherwise."""
        if isinstance(value, MessageType):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                pass
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            try:
                return cls(int(value))
            except ValueError:
                pass
        known = ", ".join(f"{m.name}={m.value}" for m in cls)
        raise FrameError(f"unknown message type {value!r}; known types: {known}")


# Frames that do not open a new round (see protocols.cost): nothing waits on them.
CONTROL_TYPES = frozenset({MessageType.ERROR, MessageType.BYE})


def check_max_frame_size(value: int) -> int:
    """Validate a configured maximum frame size (bytes, header included)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"max_frame_size must be an int number of bytes, got {value!r}")
    value = int(value)
    if not MIN_MAX_FRAME_SIZE <= value <= MAX_MAX_FRAME_SIZE:
        raise ValueError(
            f"max_frame_size={value} is out of range; use {MIN_MAX_FRAME_SIZE}..{MAX_MAX_FRAME_SIZE} "
            f"bytes (default {DEFAULT_MAX_FRAME_SIZE})")
    return value


@dataclass(frozen=True)
class FrameHeader:
    msg_type: MessageType
    flags: int
    payload_length: int

    @property
    def frame_size(self) -> int:
        """Bytes of the whole frame on the wire, header included."""
        return HEADER_SIZE + self.payload_length

    @property
    def is_array(self) -> bool:
        return bool(self.flags & FLAG_ARRAY)


@dataclass(frozen=True)
class Frame:
    msg_type: MessageType
    flags: int
    payload: bytes | bytearray | np.ndarray      # received frames: a uint8 array (no copy made)

    @property
    def is_array(self) -> bool:
        return bool(self.flags & FLAG_ARRAY)

    @property
    def frame_size(self) -> int:
        return HEADER_SIZE + len(self.payload)


def _too_large(frame_size: int, max_frame_size: int, who: str) -> FrameError:
    return FrameError(
        f"{who} frame of {frame_size} bytes ({frame_size - HEADER_SIZE} payload + {HEADER_SIZE} header) "
        f"exceeds max_frame_size={max_frame_size} bytes; split the message or raise max_frame_size "
        f"on both parties")


def pack_header(msg_type: MessageType | int | str, payload_length: int, flags: int = 0,
                max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """The 16 header bytes for a frame with `payload_length` payload bytes."""
    mt = MessageType.coerce(msg_type)
    if not isinstance(flags, int) or flags & ~KNOWN_FLAGS or flags < 0:
        raise FrameError(f"unknown frame flags 0x{flags:04x}; known flags: 0x{KNOWN_FLAGS:04x}"
                         if isinstance(flags, int) else f"flags must be an int, got {flags!r}")
    if payload_length < 0:
        raise FrameError(f"payload length must be >= 0, got {payload_length}")
    if HEADER_SIZE + payload_length > max_frame_size:
        raise _too_large(HEADER_SIZE + payload_length, max_frame_size, "outgoing")
    return HEADER.pack(MAGIC, FRAME_VERSION, int(mt), flags, payload_length)


def parse_header(data: bytes | bytearray | memoryview,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> FrameHeader:
    """Check and decode the 16 header bytes. Raises FrameError naming the offending value."""
    if len(data) != HEADER_SIZE:
        raise FrameError(f"a frame header is {HEADER_SIZE} bytes, got {len(data)}")
    magic, version, type_byte, flags, length = HEADER.unpack(bytes(data))
    if magic != MAGIC:
        raise FrameError(f"bad frame magic {magic!r} (expected {MAGIC!r}): the peer does not speak "
                         f"this protocol, or the stream lost sync")
    if version != FRAME_VERSION:
        raise FrameError(f"unsupported frame version {version} (this build speaks version "
                         f"{FRAME_VERSION}); run the same release on both parties")
    try:
        mt = MessageType(type_byte)
    except ValueError:
        raise FrameError(f"unknown message type {type_byte} in frame header; known types: "
                         + ", ".join(f"{m.name}={m.value}" for m in MessageType)) from None
    if flags & ~KNOWN_FLAGS:
        raise FrameError(f"unknown frame flags 0x{flags:04x} (known: 0x{KNOWN_FLAGS:04x})")
    if HEADER_SIZE + length > max_frame_size:
        raise _too_large(HEADER_SIZE + length, max_frame_size, "incoming")
    return FrameHeader(mt, flags, length)


def encode_frame(msg_type: MessageType | int | str, payload: bytes | bytearray | memoryview = b"",
                 flags: int = 0, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """One complete frame as bytes."""
    payload = memoryview(payload).cast("B")
    return pack_header(msg_type, len(payload), flags, max_frame_size) + bytes(payload)


def decode_frame(data: bytes | bytearray | memoryview,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> Frame:
    """Decode exactly one complete frame held in `data` (truncated or trailing bytes: FrameError)."""
    view = memoryview(data).cast("B")
    if len(view) < HEADER_SIZE:
        raise FrameError(f"truncated frame: {len(view)} bytes, less than the {HEADER_SIZE}-byte header")
    header = parse_header(view[:HEADER_SIZE], max_frame_size)
    got = len(view) - HEADER_SIZE
    if got < header.payload_length:
        raise FrameError(f"truncated frame: the header announces {header.payload_length} payload bytes "
                         f"of a {header.msg_type.name} frame, only {got} present")
    if got > header.payload_length:
        raise FrameError(f"{got - header.payload_length} trailing bytes after a "
                         f"{header.msg_type.name} frame of {header.payload_length} payload bytes")
    return Frame(header.msg_type, header.flags, bytes(view[HEADER_SIZE:]))


# --------------------------------------------------------------------------- arrays

DTYPE_CODES: dict[str, int] = {
    "|b1": 1, "|i1": 2, "|u1": 3, "<i2": 4, "<u2": 5, "<i4": 6, "<u4": 7,
    "<i8": 8, "<u8": 9, "<f2": 10, "<f4": 11, "<f8": 12,
}
CODE_DTYPES: dict[int, np.dtype] = {code: np.dtype(s) for s, code in DTYPE_CODES.items()}


def _wire_key(dtype: np.dtype) -> str:
    return dtype.newbyteorder("<").str


def dtype_code(dtype: object) -> int:
    """The wire code of a dtype; ValueError naming the dtype when arrays of it cannot be sent."""
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as e:
        raise ValueError(f"{dtype!r} is not a numpy dtype: {e}") from None
    code = DTYPE_CODES.get(_wire_key(dt)) if dt.fields is None and dt.subdtype is None else None
    if code is None:
        allowed = ", ".join(str(CODE_DTYPES[c]) for c in sorted(CODE_DTYPES))
        raise ValueError(f"arrays of dtype {dt} cannot be sent; supported dtypes: {allowed}")
    return code


def encode_array(arr: np.ndarray) -> tuple[bytes, memoryview]:
    """(array header, data bytes) for a frame with FLAG_ARRAY. The data view shares memory
    with a C-contiguous little-endian version of `arr` (a copy only where one is needed)."""
    if isinstance(arr, np.generic):
        arr = np.asarray(arr)
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"send_array needs a numpy.ndarray, got {type(arr).__name__}")
    code = dtype_code(arr.dtype)
    if arr.ndim > MAX_NDIM:
        raise ValueError(f"arrays with {arr.ndim} dimensions cannot be sent (at most {MAX_NDIM})")
    wire = CODE_DTYPES[code]
    a = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # (keeps 0-d arrays 0-d)
    if a.dtype != wire:  # byte order only: same kind and size
        a = a.astype(wire)
    return array_header(code, a.shape), memoryview(a.reshape(-1).view(np.uint8))


def array_header(code: int, shape: tuple[int, ...]) -> bytes:
    """The header of an array payload (dtype code, ndim, reserved, dimensions)."""
    return ARRAY_HEADER.pack(code, len(shape), 0) + b"".join(struct.pack("!Q", d) for d in shape)


def _check_expected_shape(shape: object) -> tuple[int | None, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"expected shape must be a tuple of ints (None for any size), got {shape!r}") from None
    for d in dims:
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0):
            raise ValueError(f"expected shape {shape!r} has an invalid dimension {d!r}; use ints >= 0 or None")
    return tuple(None if d is None else int(d) for d in dims)


def decode_array(payload: bytes | bytearray | memoryview, dtype: object = None, shape: object = None,
                 what: str = "array") -> np.ndarray:
    """Decode an array payload and check it against the expected `dtype` and `shape`
    (None: anything; a None inside `shape`: any size on that axis).

    Malformed encodings raise FrameError; a well-formed array of the wrong dtype or shape
    raises ProtocolError naming both. The result is writable (it owns its memory when
    `payload` is read-only)."""
    view = memoryview(payload).cast("B")
    if len(view) < ARRAY_HEADER.size:
        raise FrameError(f"{what}: array payload of {len(view)} bytes is shorter than its "
                         f"{ARRAY_HEADER.size}-byte header")
    code, ndim, reserved = ARRAY_HEADER.unpack(bytes(view[:ARRAY_HEADER.size]))
    if code not in CODE_DTYPES:
        raise FrameError(f"{what}: unknown array dtype code {code}; known codes: "
                         + ", ".join(f"{c}={CODE_DTYPES[c]}" for c in sorted(CODE_DTYPES)))
    if ndim > MAX_NDIM:
        raise FrameError(f"{what}: array ndim {ndim} exceeds the maximum {MAX_NDIM}")
    if reserved:
        raise FrameError(f"{what}: reserved array header field is 0x{reserved:04x}, must be 0")
    head = ARRAY_HEADER.size + 8 * ndim
    if len(view) < head:
        raise FrameError(f"{what}: array header announces {ndim} dimensions but the payload has "
                         f"only {len(view)} bytes")
    dims = struct.unpack(f"!{ndim}Q", bytes(view[ARRAY_HEADER.size:head])) if ndim else ()
    wire = CODE_DTYPES[code]
    count = math.prod(dims)
    nbytes = count * wire.itemsize
    if len(view) - head != nbytes:
        raise FrameError(f"{what}: array of dtype {wire} and shape {tuple(dims)} needs {nbytes} data "
                         f"bytes, the payload carries {len(view) - head}")
    native = wire.newbyteorder("=") if wire.itemsize > 1 else wire
    if dtype is not None:
        want = np.dtype(CODE_DTYPES[dtype_code(dtype)])
        if want != wire:
            raise ProtocolError(f"{what}: expected dtype {want.newbyteorder('=')}, received {native} "
                                f"(shape {tuple(dims)})")
    if shape is not None:
        want_shape = _check_expected_shape(shape)
        if len(want_shape) != ndim or any(w is not None and w != d for w, d in zip(want_shape, dims)):
            shown = "(" + ", ".join("*" if w is None else str(w) for w in want_shape) + \
                    ("," if len(want_shape) == 1 else "") + ")"
            raise ProtocolError(f"{what}: expected shape {shown}, received {tuple(dims)} "
                                f"(dtype {native})")
    arr = np.frombuffer(view, dtype=wire, count=count, offset=head) if count else np.empty(0, wire)
    if wire.byteorder == "<" and sys.byteorder == "big":
        arr = arr.astype(native)
    elif arr.size and not arr.flags.writeable:
        arr = arr.copy()
    return arr.reshape(dims)
