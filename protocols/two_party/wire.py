"""What the two-party sessions put on a channel: ring vectors, byte strings, bit vectors, and
the offline flights (named items, each checked against what the plan says must arrive).

Everything a peer sends is checked before it is used; anything unexpected (a wrong item,
dtype, size, a malformed GC or HE buffer) is a `ProtocolError` naming what was wrong."""
from __future__ import annotations

import contextlib
import struct

import numpy as np

from protocols.fixed_point import Ring
from protocols.transport.errors import ProtocolError

U64 = np.uint64


def send_ring(chan, ring: Ring, x: np.ndarray) -> None:
    """Ring elements reduced mod 2^l, ceil(l/8) bytes each (l < 64 always here)."""
    chan.send_array(ring.pack(np.ascontiguousarray(x, dtype=U64)))


def recv_ring(chan, ring: Ring, n: int, what: str) -> np.ndarray:
    """n ring elements sent by send_ring; a wrong size or an element above bit l is the peer's fault."""
    wire = chan.recv_array(dtype=U64 if ring.full else np.uint8)
    return unpack_ring(ring, wire, n, what)


def unpack_ring(ring: Ring, wire: np.ndarray, n: int, what: str) -> np.ndarray:
    if wire.shape != ring.wire_shape(n):
        raise ProtocolError(f"{what}: expected {n} ring elements (wire shape {ring.wire_shape(n)}), "
                            f"received wire shape {wire.shape}")
    try:
        return ring.unpack(wire)
    except ValueError as exc:
        raise ProtocolError(f"{what}: malformed ring elements: {exc}") from None


def send_bytes(chan, b: bytes) -> None:
    chan.send_array(np.frombuffer(bytes(b), dtype=np.uint8))


def recv_bytes(chan) -> bytes:
    return recv_buffer(chan).tobytes()


def recv_buffer(chan) -> np.ndarray:
    """What send_bytes sent, as the received uint8 array itself (no copy: for large messages
    the native code reads as a byte buffer, such as garbler labels)."""
    return chan.recv_array(dtype=np.uint8, shape=(None,))


def pack_bits(bits: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(bits, dtype=np.uint8), bitorder="little")


def unpack_bits(packed: np.ndarray, n: int, what: str) -> np.ndarray:
    if packed.shape != ((n + 7) // 8,):
        raise ProtocolError(f"{what}: expected {n} bits in {(n + 7) // 8} bytes, received {packed.size} bytes")
    bits = np.unpackbits(packed, bitorder="little")
    if bits[n:].any():
        raise ProtocolError(f"{what}: padding bits are set")
    return np.ascontiguousarray(bits[:n])


# A parcel: several byte strings in one message, for the parts of one flight (every message
# costs a frame, a TLS record and a wake-up of the peer). b"PIPC", u32 count, u64 lengths, parts.
PARCEL = b"PIPC"


def send_parcel(chan, *parts) -> None:
    """parts: bytes or numpy arrays (their bytes; the receiver knows their shapes). The parts
    go to the channel as they are (no joined copy of the labels)."""
    raw = [memoryview(p if isinstance(p, bytes) else np.ascontiguousarray(p)).cast("B") for p in parts]
    chan.send_byte_parts([PARCEL + struct.pack(f"<I{len(raw)}Q", len(raw), *map(len, raw)), *raw])


def recv_parcel(chan, count: int, what: str) -> list[np.ndarray]:
    """The `count` parts of a parcel as uint8 arrays (views of the received message); any
    other layout is a ProtocolError."""
    return parcel_parts(recv_buffer(chan), count, what)


def parcel_parts(msg: np.ndarray, count: int, what: str) -> list[np.ndarray]:
    head = 8 + 8 * count
    if msg.size < head or msg[:4].tobytes() != PARCEL or struct.unpack_from("<I", msg, 4)[0] != count:
        raise ProtocolError(f"{what}: not a parcel of {count} parts")
    lengths = struct.unpack_from(f"<{count}Q", msg, 8)
    if head + sum(lengths) != msg.size:
        raise ProtocolError(f"{what}: the parcel's part lengths do not add up to its {msg.size} bytes")
    out, at = [], head
    for n in lengths:
        out.append(msg[at:at + n])
        at += n
    return out


def peer_fault(what: str):
    """Turns the GC/HE libraries' errors about a peer's buffer into a ProtocolError."""
    return _PeerFault(what)


class _PeerFault(contextlib.AbstractContextManager):
    def __init__(self, what: str) -> None:
        self.what = what

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, (ValueError, TypeError)) \
                and not issubclass(exc_type, ProtocolError):
            raise ProtocolError(f"{self.what}: the peer's message was refused: {exc}") from None
        return False


class Flight:
    """One offline flight: named byte strings (HE ciphertexts, OT messages, garbled tables),
    sent as a count and then (name, payload) pairs. Each item's bytes are charged to the
    layer its name starts with (`scope_of(name)`)."""

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}

    def put(self, name: str, value: bytes) -> None:
        assert name not in self.items, name
        self.items[name] = bytes(value)

    def send(self, chan, scope_of) -> None:
        chan.send_array(np.asarray([len(self.items)], dtype=U64))
        for name, value in self.items.items():
            chan.send_array(np.frombuffer(name.encode(), dtype=np.uint8))
            with scope_of(name):
                send_bytes(chan, value)

    @staticmethod
    def receive(chan, expected: set[str], scope_of) -> dict[str, bytes]:
        """The peer's flight, which must hold exactly the items named in `expected`
        (missing, extra or duplicate items are a ProtocolError)."""
        n = int(chan.recv_array(dtype=U64, shape=(1,))[0])
        if n != len(expected):
            raise ProtocolError(f"the peer's offline flight announces {n} items, this plan expects {len(expected)}")
        out: dict[str, bytes] = {}
        for _ in range(n):
            try:
                name = chan.recv_array(dtype=np.uint8, shape=(None,)).tobytes().decode()
            except UnicodeDecodeError:
                raise ProtocolError("an offline item's name is not UTF-8") from None
            if name not in expected or name in out:
                raise ProtocolError(f"unexpected offline item {name[:80]!r} from the peer "
                                    f"({'a duplicate' if name in out else 'not expected in this flight'})")
            with scope_of(name):
                out[name] = recv_bytes(chan)
        return out
