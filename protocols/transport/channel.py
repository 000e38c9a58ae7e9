"""Channels: how two parties exchange frames.

Over 500 lines on purpose: the base class and its two implementations share all framing and
accounting code, and the TLS handshake, `connect` and `Listener` make the one TLS channel;
kept together, the in-process and TLS channels cannot drift apart in what they count.

`Channel` is the one interface the protocols use. Two implementations share all the framing
and accounting code in the base class, so they count bytes and rounds identically:

- `InProcessChannel.pair()`: two endpoints joined by thread-safe byte pipes (tests,
  single-process simulation). The bytes that move through the pipes are exactly the frame
  bytes a `TlsChannel` hands to TLS.
- `TlsChannel` over TCP (`connect()` / `Listener.accept()`), TLS 1.3 only, peer pinned by
  certificate fingerprint, optional mutual TLS.

Counted bytes are whole frames (16-byte header + payload). Not counted: the TCP/IP and TLS
record overhead (about 22 bytes per TLS record of up to 16 KiB) and the TLS handshake.

Sending never deadlocks against a peer that sends at the same time: while a `TlsChannel`
waits to write, it reads whatever the peer sends into a buffer (the in-process pipes are
unbounded). A channel may be shared between threads, but it does one operation at a time
(one lock around send, recv and close): a thread blocked in `recv` holds up a `send` from
another thread until it returns or times out. Run each party's protocol on one thread.
"""
from __future__ import annotations

import abc
import collections
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from protocols.cost import CostMeter
from protocols.transport.certs import TlsConfig
from protocols.transport.errors import (
    ChannelTimeout,
    FrameError,
    HandshakeError,
    PeerDisconnected,
    ProtocolError,
    RemoteError,
    TransportError,
)
from protocols.transport.frame import (
    CONTROL_TYPES,
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_ARRAY,
    HEADER_SIZE,
    Frame,
    MessageType,
    array_header,
    check_max_frame_size,
    decode_array,
    dtype_code,
    encode_array,
    pack_header,
    parse_header,
)

DEFAULT_TIMEOUT = 120.0  # seconds without progress from the peer
DEFAULT_HANDSHAKE_TIMEOUT = 5.0  # seconds for the whole TLS handshake
_FIRST_READ = 64 * 1024  # first buffer of a frame payload (what a header alone can make us allocate)
_GROWN = 16 << 20  # the buffer's size once the first buffer is full (at most the frame's length)
MAX_ERROR_REASON = 4096  # bytes of an ERROR frame's reason that are kept


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


class _Same:
    def __repr__(self) -> str:
        return "SAME"


DEFAULT: Any = _Default()  # "use the channel's timeout"
SAME: Any = _Same()        # exchange_array: "expect what I sent"


class _Stalled(Exception):
    """Internal: no progress within the timeout; `got` bytes of the current read arrived."""

    def __init__(self, got: int) -> None:
        super().__init__(got)
        self.got = got


def _check_timeout(timeout: object, name: str = "timeout") -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None (wait forever), got {timeout!r}")
    return float(timeout)


class Channel(abc.ABC):
    """A reliable, ordered, framed connection to the other party.

    `meter` (a `CostMeter`) records every frame sent or received into its current scope.
    `timeout` is the longest time to wait for any progress from the peer (None: forever).
    """

    def __init__(self, meter: CostMeter | None, *, max_frame_size: int, timeout: float | None,
                 party: str) -> None:
        if meter is not None and not isinstance(meter, CostMeter):
            raise TypeError(f"meter must be a CostMeter or None, got {type(meter).__name__}")
        self.meter = meter if meter is not None else CostMeter(party)
        self.max_frame_size = check_max_frame_size(max_frame_size)
        self.timeout = _check_timeout(timeout)
        self._lock = threading.RLock()
        self._closed = False
        self._peer_closed = False    # BYE received
        self._rx_broken: str | None = None  # the incoming stream lost sync: no more recv
        self._tx_broken: str | None = None  # the outgoing stream failed: no more send

    # ------------------------------------------------------------------ transport primitives
    @abc.abstractmethod
    def _write(self, parts: Sequence[memoryview], timeout: float | None) -> None:
        """Write all bytes of `parts`, or raise PeerDisconnected / _Stalled."""

    @abc.abstractmethod
    def _read_into(self, view: memoryview, timeout: float | None) -> int:
        """Fill `view`; return fewer bytes only at end of stream; raise _Stalled when the peer
        makes no progress within `timeout`."""

    @abc.abstractmethod
    def _close_transport(self) -> None:
        ...

    def _pending_error(self) -> str | None:
        """After a failed send: the reason of an ERROR frame the peer sent before it hung up,
        when that frame is the next one to read (a refusal: busy, bad request)."""
        return None

    # ------------------------------------------------------------------ state
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def peer_closed(self) -> bool:
        """True once the peer has said BYE."""
        return self._peer_closed

    def _timeout(self, timeout: object) -> float | None:
        return self.timeout if timeout is DEFAULT else _check_timeout(timeout)

    def _check_open(self, sending: bool) -> None:
        if self._closed:
            raise TransportError("the channel is closed")
        broken = self._tx_broken if sending else self._rx_broken
        if broken:
            raise TransportError(f"the channel can no longer {'send' if sending else 'receive'} "
                                 f"after an earlier error: {broken}")

    # ------------------------------------------------------------------ sending
    def _send_frame(self, mt: MessageType, parts: Sequence[Any], flags: int) -> int:
        views = [memoryview(p).cast("B") for p in parts]
        length = sum(len(v) for v in views)
        header = pack_header(mt, length, flags, self.max_frame_size)  # FrameError when too large
        with self._lock:
            self._check_open(sending=True)
            t = self.timeout
            try:
                self._write([memoryview(header), *views], t)
            except _Stalled:
                self._tx_broken = f"send of a {mt.name} frame timed out"
                raise ChannelTimeout(f"the peer did not read for {t:g} s while we sent a {mt.name} frame "
                                     f"of {HEADER_SIZE + length} bytes; raise the channel timeout or "
                                     f"check the peer") from None
            except PeerDisconnected as e:
                self._tx_broken = str(e)
                reason = self._pending_error()
                if reason is not None:      # the peer said why it hung up: report that
                    raise RemoteError(reason) from None
                raise
            self.meter.record_sent(HEADER_SIZE + length, control=mt in CONTROL_TYPES)
        return HEADER_SIZE + length

    def send(self, msg_type: MessageType | int | str, payload: bytes | bytearray | memoryview = b"") -> int:
        """Send one frame of raw bytes. Returns the frame's size in bytes (as counted)."""
        mt = MessageType.coerce(msg_type)
        if mt == MessageType.ARRAY:
            raise ValueError("ARRAY frames carry encoded arrays: use send_array(arr)")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__} "
                            f"(use send_array for numpy arrays)")
        return self._send_frame(mt, [payload], 0)

    def send_array(self, arr: np.ndarray, msg_type: MessageType | int | str = MessageType.ARRAY) -> int:
        """Send a numpy array (dtype and shape travel in a small header). Returns the frame size."""
        mt = MessageType.coerce(msg_type)
        if mt in CONTROL_TYPES:
            raise ValueError(f"{mt.name} frames cannot carry arrays")
        head, data = encode_array(arr)
        return self._send_frame(mt, [head, data], FLAG_ARRAY)

    def send_byte_parts(self, parts: Sequence[Any], msg_type: MessageType | int | str = MessageType.ARRAY) -> int:
        """Send the concatenation of byte buffers as one uint8 array (what send_array of the
        joined bytes sends) without joining them: large parts go to the transport as they are."""
        mt = MessageType.coerce(msg_type)
        if mt in CONTROL_TYPES:
            raise ValueError(f"{mt.name} frames cannot carry arrays")
        views = [memoryview(p).cast("B") for p in parts]
        head = array_header(dtype_code(np.uint8), (sum(len(v) for v in views),))
        return self._send_frame(mt, [head, *views], FLAG_ARRAY)

    def send_error(self, reason: str) -> int:
        """Tell the peer that this party gives up; the peer's recv raises RemoteError(reason).
        The reason travels in the clear inside the channel: never put secrets in it."""
        data = str(reason).encode("utf-8", "replace")[:MAX_ERROR_REASON]
        return self._send_frame(MessageType.ERROR, [data], 0)

    # ------------------------------------------------------------------ receiving
    def _read_exact(self, view: memoryview, timeout: float | None, what: str, started: bool,
                    before: int = 0, total: int | None = None) -> None:
        """Fill `view`. `before` bytes of a `total`-byte item arrived earlier (for messages)."""
        total = len(view) + before if total is None else total
        try:
            got = self._read_into(view, timeout)
        except _Stalled as s:
            if s.got == 0 and before == 0 and not started:
                raise ChannelTimeout(f"no data from the peer for {timeout:g} s while waiting for {what}; "
                                     f"raise the channel timeout or check the peer") from None
            self._rx_broken = f"timed out in the middle of {what}"
            raise ChannelTimeout(f"the peer stalled for {timeout:g} s in the middle of {what} "
                                 f"({before + s.got} of {total} bytes arrived); the channel is unusable") from None
        except PeerDisconnected as e:
            self._rx_broken = str(e)
            raise
        if got < len(view):
            if got == 0 and before == 0 and not started:
                self._rx_broken = "the peer closed the connection"
                raise PeerDisconnected(f"the peer closed the connection while we waited for {what}")
            self._rx_broken = "the peer disconnected mid-frame"
            raise PeerDisconnected(f"the peer disconnected mid-frame: {before + got} of {total} bytes of "
                                   f"{what} arrived")

    def _read_payload(self, n: int, timeout: float | None, what: str) -> np.ndarray:
        """The n payload bytes of a frame, as a uint8 array. The buffer grows with the bytes that
        arrive: a header alone never makes us allocate the length it announces (a peer that
        announces 1 GiB and sends nothing costs 64 KiB); once the first 64 KiB have arrived the
        buffer takes the frame's length up to _GROWN, then doubles. Buffers are not zero-filled,
        so a buffer's pages are committed as the bytes arrive. Few growth steps matter: each is
        a fresh buffer whose pages fault in again and a copy of what arrived (doubling from
        64 KiB cost a 700 KB message 2–3x the receiver CPU, docs/transport.md)."""
        buf = np.empty(min(n, _FIRST_READ), np.uint8)
        got = 0
        while True:
            self._read_exact(memoryview(buf)[got:], timeout, what, started=True, before=got, total=n)
            got = buf.size
            if got == n:
                return buf
            grown = np.empty(min(n, max(2 * got, _GROWN)), np.uint8)
            grown[:got] = buf
            buf = grown

    def _recv_raw(self, timeout: object, expect: MessageType | None) -> Frame:
        t = self._timeout(timeout)
        want = f"a frame of type {expect.name}" if expect is not None else "a frame"
        with self._lock:
            self._check_open(sending=False)
            if self._peer_closed:
                raise PeerDisconnected(f"the peer closed the channel (BYE) earlier; cannot receive {want}")
            head = bytearray(HEADER_SIZE)
            self._read_exact(memoryview(head), t, f"the header of {want}", started=False)
            try:
                header = parse_header(head, self.max_frame_size)
            except FrameError:
                self._rx_broken = "received a malformed frame header"
                raise
            payload = self._read_payload(
                header.payload_length, t,
                f"the {header.payload_length}-byte payload of the {header.msg_type.name} frame")
            self.meter.record_received(header.frame_size)
            if header.msg_type == MessageType.BYE:
                self._peer_closed = True
            frame = Frame(header.msg_type, header.flags, payload)
        if frame.msg_type == MessageType.ERROR:
            raise RemoteError(bytes(frame.payload[:MAX_ERROR_REASON]).decode("utf-8", "replace"))
        return frame

    def _recv_expected(self, expect: MessageType | int | str | None, timeout: object) -> Frame:
        exp = None if expect is None else MessageType.coerce(expect)
        frame = self._recv_raw(timeout, exp)
        if frame.msg_type == MessageType.BYE and exp != MessageType.BYE:
            want = f"a frame of type {exp.name}" if exp is not None else "a frame"
            raise PeerDisconnected(f"the peer closed the channel (BYE) while we expected {want}")
        if exp is not None and frame.msg_type != exp:
            raise ProtocolError(f"expected a frame of type {exp.name}, received {frame.msg_type.name} "
                                f"({len(frame.payload)} payload bytes)")
        return frame

    def recv_frame(self, expect: MessageType | int | str | None = None, *, timeout: object = DEFAULT) -> Frame:
        """The next frame (type, flags, payload). ERROR raises RemoteError, BYE PeerDisconnected
        (unless expect=BYE), another type than `expect` ProtocolError."""
        return self._recv_expected(expect, timeout)

    def recv(self, expect: MessageType | int | str | None = None, *, timeout: object = DEFAULT) -> bytes:
        """The payload of the next frame; see `recv_frame` for the checks."""
        return bytes(self._recv_expected(expect, timeout).payload)

    def recv_array(self, dtype: object = None, shape: object = None, *,
                   expect: MessageType | int | str = MessageType.ARRAY, timeout: object = DEFAULT) -> np.ndarray:
        """The next frame's array, checked against `dtype` and `shape` (None: any; None inside
        `shape`: any size on that axis). A mismatch raises ProtocolError naming both."""
        frame = self._recv_expected(expect, timeout)
        if not frame.is_array:
            raise ProtocolError(f"expected an array in the {frame.msg_type.name} frame, received "
                                f"{len(frame.payload)} raw bytes")
        return decode_array(frame.payload, dtype, shape, what=f"{frame.msg_type.name} frame")

    # ------------------------------------------------------------------ one round
    def exchange(self, msg_type: MessageType | int | str, payload: bytes, expect: object = SAME, *,
                 timeout: object = DEFAULT) -> bytes:
        """Both parties send, then both receive: one round for each party."""
        mt = MessageType.coerce(msg_type)
        self.send(mt, payload)
        return self.recv(mt if expect is SAME else expect, timeout=timeout)

    def exchange_array(self, arr: np.ndarray, dtype: object = SAME, shape: object = SAME, *,
                       msg_type: MessageType | int | str = MessageType.ARRAY, expect: object = SAME,
                       timeout: object = DEFAULT) -> np.ndarray:
        """Send `arr` and receive the peer's array (both parties call it: one round each).
        By default the peer's array must have the same dtype, shape and message type."""
        if isinstance(arr, np.generic):
            arr = np.asarray(arr)
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"exchange_array needs a numpy.ndarray, got {type(arr).__name__}")
        mt = MessageType.coerce(msg_type)
        self.send_array(arr, mt)
        return self.recv_array(arr.dtype if dtype is SAME else dtype, arr.shape if shape is SAME else shape,
                               expect=mt if expect is SAME else expect, timeout=timeout)

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Say BYE (best effort, counted like any frame) and release the connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            if not self._tx_broken:
                try:
                    saved, self.timeout = self.timeout, min(self.timeout or 1.0, 1.0)
                    try:
                        self._send_frame(MessageType.BYE, [], 0)
                    finally:
                        self.timeout = saved
                except (TransportError, OSError):
                    pass
            self._closed = True
            self._close_transport()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Leaving with an error: tell the peer (class name only: messages may hold secrets).
        if (exc is not None and isinstance(exc, Exception) and not self._closed and not self._tx_broken
                and not isinstance(exc, (PeerDisconnected, RemoteError))):
            try:
                self.send_error(f"{type(exc).__name__} on the other party")
            except (TransportError, OSError):
                pass
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self._closed = True
                self._close_transport()
        except Exception:  # noqa: BLE001, S110 -- a finalizer must not raise
            pass


# ============================================================================ in-process

class _Pipe:
    """One direction of an in-process channel: an unbounded thread-safe byte queue."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._offset = 0
        self._writer_closed = False
        self._reader_closed = False

    def write(self, parts: Sequence[memoryview]) -> None:
        data = [bytes(p) for p in parts if len(p)]
        with self._cond:
            if self._reader_closed:
                raise PeerDisconnected("the peer closed the channel; cannot send")
            if self._writer_closed:
                raise TransportError("write on a closed pipe")
            self._chunks.extend(data)
            self._cond.notify_all()

    def read_into(self, view: memoryview, timeout: float | None) -> int:
        got = 0
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while got < len(view):
                if self._chunks:
                    chunk = self._chunks[0]
                    n = min(len(chunk) - self._offset, len(view) - got)
                    view[got:got + n] = memoryview(chunk)[self._offset:self._offset + n]
                    got += n
                    self._offset += n
                    if self._offset == len(chunk):
                        self._chunks.popleft()
                        self._offset = 0
                    deadline = None if timeout is None else time.monotonic() + timeout
                    continue
                if self._writer_closed:
                    return got
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise _Stalled(got)
                    self._cond.wait(left)
        return got

    def close_writer(self) -> None:
        with self._cond:
            self._writer_closed = True
            self._cond.notify_all()

    def close_reader(self) -> None:
        with self._cond:
            self._reader_closed = True
            self._chunks.clear()
            self._offset = 0
            self._cond.notify_all()


class InProcessChannel(Channel):
    """One endpoint of an in-process channel; make both with `InProcessChannel.pair()`."""

    def __init__(self, outgoing: _Pipe, incoming: _Pipe, meter: CostMeter | None = None, *,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, timeout: float | None = DEFAULT_TIMEOUT,
                 party: str = "party") -> None:
        super().__init__(meter, max_frame_size=max_frame_size, timeout=timeout, party=party)
        self._out, self._in = outgoing, incoming

    @classmethod
    def pair(cls, meter_a: CostMeter | None = None, meter_b: CostMeter | None = None, *,
             max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, timeout: float | None = DEFAULT_TIMEOUT
             ) -> tuple[InProcessChannel, InProcessChannel]:
        """Two connected endpoints (a, b); each records into its own meter."""
        ab, ba = _Pipe(), _Pipe()
        a = cls(ab, ba, meter_a, max_frame_size=max_frame_size, timeout=timeout, party="a")
        b = cls(ba, ab, meter_b, max_frame_size=max_frame_size, timeout=timeout, party="b")
        return a, b

    def _write(self, parts: Sequence[memoryview], timeout: float | None) -> None:
        self._out.write(parts)

    def _read_into(self, view: memoryview, timeout: float | None) -> int:
        return self._in.read_into(view, timeout)

    def _close_transport(self) -> None:
        self._out.close_writer()
        self._in.close_reader()

    def __repr__(self) -> str:
        return f"InProcessChannel(party={self.meter.party!r}, closed={self._closed})"


# ============================================================================ TLS over TCP

_CHUNK = 256 * 1024


def _describe_ssl_error(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    return f"{reason} ({e})" if reason else str(e)


def _cert_rejected(e: BaseException) -> bool:
    reason = str(getattr(e, "reason", "") or e).upper()
    return "CERTIFICATE" in reason or "UNKNOWN_CA" in reason


class TlsChannel(Channel):
    """A channel over one TLS 1.3 connection. Make one with `connect()` or `Listener.accept()`."""

    def __init__(self, sock: ssl.SSLSocket, *, peer_fingerprint: str, peer_address: tuple,
                 meter: CostMeter | None = None, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 timeout: float | None = DEFAULT_TIMEOUT, party: str = "party") -> None:
        super().__init__(meter, max_frame_size=max_frame_size, timeout=timeout, party=party)
        self._sock = sock
        self.peer_fingerprint = peer_fingerprint
        self.peer_address = peer_address
        self.tls_version = sock.version()
        sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._rbuf = bytearray()           # bytes read while we were blocked on a write
        self._rbuf_cap = max(4 << 20, self.max_frame_size)
        self._eof = False
        self._rx_error: TransportError | None = None

    # -------------------------------------------------------------- low level
    def _wait(self, read: bool, write: bool, timeout: float | None) -> tuple[bool, bool]:
        mask = (select.POLLIN if read else 0) | (select.POLLOUT if write else 0)
        self._poll.modify(self._sock.fileno(), mask)
        events = self._poll.poll(None if timeout is None else max(0, int(timeout * 1000)))
        r = w = False
        for _, ev in events:
            if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                r = True
            if ev & (select.POLLOUT | select.POLLHUP | select.POLLERR):
                w = True
        return r, w

    def _rx_failed(self, e: BaseException) -> None:
        if isinstance(e, ssl.SSLError) and not isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) \
                and _cert_rejected(e):
            self._rx_error = HandshakeError(
                f"the peer refused this party's TLS certificate: {_describe_ssl_error(e)}; a server with "
                f"require_client_cert=True needs a client certificate it trusts (its peer_cert)")
        elif isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            self._eof = True
        else:
            self._rx_error = PeerDisconnected(f"the connection to the peer failed: {_describe_ssl_error(e)}")

    def _recv_some(self, view: memoryview | None) -> int | None:
        """One non-blocking read into `view` (or into the buffer when None).
        Returns bytes read, 0 at end of stream, None when nothing is available now."""
        try:
            if view is None:
                data = self._sock.recv(65536)
                self._rbuf += data
                n = len(data)
            else:
                n = self._sock.recv_into(view, len(view))
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            return None
        except (ssl.SSLError, OSError) as e:
            self._rx_failed(e)
            return 0
        if n == 0:
            self._eof = True
        return n

    def _pending_error(self) -> str | None:
        while not self._eof and self._rx_error is None and len(self._rbuf) < self._rbuf_cap:
            if not self._recv_some(None):
                break
        if len(self._rbuf) < HEADER_SIZE or self._rx_broken:
            return None
        try:
            header = parse_header(self._rbuf[:HEADER_SIZE], self.max_frame_size)
        except FrameError:
            return None
        if header.msg_type != MessageType.ERROR or len(self._rbuf) < header.frame_size:
            return None
        return bytes(self._rbuf[HEADER_SIZE:header.frame_size][:MAX_ERROR_REASON]).decode("utf-8", "replace")

    def _drain(self) -> None:
        """Move whatever the peer has sent into the buffer (called while a write is blocked)."""
        while not self._eof and self._rx_error is None and len(self._rbuf) < self._rbuf_cap:
            n = self._recv_some(None)
            if not n:
                return

    def _write(self, parts: Sequence[memoryview], timeout: float | None) -> None:
        # Each send is a TLS record and a syscall, and a peer woken by a header alone sleeps
        # again until the payload follows: the first send carries a frame's leading parts
        # (headers) with the start of its payload, up to one chunk; the rest goes uncopied.
        if len(parts) > 1:
            first: list[memoryview] = []
            rest = list(parts)
            room = _CHUNK
            while rest and len(rest[0]) <= room:
                room -= len(rest[0])
                first.append(rest.pop(0))
            if rest:
                first.append(rest[0][:room])
                rest[0] = rest[0][room:]
            parts = [memoryview(b"".join(first)), *rest]
        for view in parts:
            off = 0
            last = time.monotonic()
            while off < len(view):
                try:
                    n = self._sock.send(view[off:off + _CHUNK])
                    off += n
                    last = time.monotonic()
                    continue
                except ssl.SSLWantWriteError:
                    want_write = True
                except ssl.SSLWantReadError:
                    want_write = False
                except (BlockingIOError, InterruptedError):
                    want_write = True
                except (ssl.SSLError, OSError) as e:
                    self._recv_some(None)   # the peer's alert (a refused certificate) says more
                    if isinstance(self._rx_error, HandshakeError):
                        raise self._rx_error from None
                    raise PeerDisconnected(f"the connection to the peer failed while sending: "
                                           f"{_describe_ssl_error(e)}") from None
                left = None if timeout is None else timeout - (time.monotonic() - last)
                if left is not None and left <= 0:
                    raise _Stalled(off)
                can_read = not self._eof and self._rx_error is None and len(self._rbuf) < self._rbuf_cap
                r, _ = self._wait(read=can_read or not want_write, write=want_write, timeout=left)
                if r and can_read:
                    self._drain()

    def _read_into(self, view: memoryview, timeout: float | None) -> int:
        got = min(len(self._rbuf), len(view))
        if got:
            view[:got] = self._rbuf[:got]
            del self._rbuf[:got]
        last = time.monotonic()
        while got < len(view):
            if self._rx_error is not None:
                raise self._rx_error
            if self._eof:
                return got
            n = self._recv_some(view[got:])
            if n is None:
                left = None if timeout is None else timeout - (time.monotonic() - last)
                if left is not None and left <= 0:
                    raise _Stalled(got)
                self._wait(read=True, write=False, timeout=left)
                continue
            got += n
            last = time.monotonic()
        return got

    def _close_transport(self) -> None:
        try:
            self._poll.unregister(self._sock.fileno())
        except (KeyError, ValueError, OSError):
            pass
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __repr__(self) -> str:
        return (f"TlsChannel(party={self.meter.party!r}, peer={self.peer_address}, "
                f"fingerprint={self.peer_fingerprint!r}, closed={self._closed})")


def _check_host_port(host: object, port: object, allow_zero: bool) -> None:
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a host name or IP address, got {host!r}")
    lo = 0 if allow_zero else 1
    if isinstance(port, bool) or not isinstance(port, int) or not lo <= port <= 65535:
        raise ValueError(f"port must be an int in {lo}..65535, got {port!r}")


def _handshake_hint(text: str, server_side: bool) -> str:
    """What a failed handshake most likely means, for the error message."""
    t = text.upper()
    if not server_side:
        return "; the server's certificate is not the one in peer_cert" if "CERTIFICATE_VERIFY_FAILED" in t else ""
    if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in t:
        return ("; the client sent no certificate and this server requires one (require_client_cert); "
                "make one with `pi keys` and give it to the client")
    if "CERTIFICATE" in t:
        return "; the client's certificate is not in this server's peer_cert"
    if "WRONG_VERSION_NUMBER" in t or "UNSUPPORTED_PROTOCOL" in t or "HTTP_REQUEST" in t:
        return "; the client does not speak TLS 1.3"
    return ""


def _tls_handshake(raw: socket.socket, ctx: ssl.SSLContext, *, server_side: bool, who: str,
                   timeout: float | None, server_hostname: str | None = None) -> ssl.SSLSocket:
    """Run the TLS handshake on a connected socket within `timeout` seconds in all (a peer
    that trickles bytes cannot stretch it). Closes `raw` and raises ChannelTimeout or
    HandshakeError on failure. The one place that turns handshake failures into messages,
    for both sides."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.setblocking(False)
        sock = ctx.wrap_socket(raw, server_side=server_side, do_handshake_on_connect=False,
                               **({} if server_side else {"server_hostname": server_hostname}))
    except (ssl.SSLError, OSError) as e:
        raw.close()
        raise HandshakeError(f"the TLS handshake with {who} failed: {_describe_ssl_error(e)}") from None
    poll = select.poll()
    while True:
        try:
            sock.do_handshake()
            break
        except ssl.SSLWantReadError:
            mask = select.POLLIN
        except ssl.SSLWantWriteError:
            mask = select.POLLOUT
        except ssl.SSLError as e:
            sock.close()
            text = _describe_ssl_error(e)
            raise HandshakeError(f"the TLS handshake with {who} failed: {text}"
                                 f"{_handshake_hint(text, server_side)}") from None
        except OSError as e:
            sock.close()
            reason = e.strerror or str(e) or type(e).__name__
            raise HandshakeError(f"the TLS handshake with {who} failed: {reason}"
                                 + ("" if server_side else " (the server may be at its connection limit)")
                                 ) from None
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            sock.close()
            hint = "" if server_side else " (is a TLS server of this protocol listening there?)"
            raise ChannelTimeout(f"the TLS handshake with {who} timed out after {timeout:g} s{hint}")
        poll.register(sock.fileno(), mask)
        poll.poll(None if left is None else max(1, int(left * 1000)))
        poll.unregister(sock.fileno())
    return sock


def connect(host: str, port: int, tls: TlsConfig, timeout: float = 10.0, *,
            recv_timeout: float | None = DEFAULT_TIMEOUT, meter: CostMeter | None = None,
            max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> TlsChannel:
    """Connect to a `Listener`, run the TLS 1.3 handshake (within `timeout` seconds) and check
    the server's certificate against the pinned fingerprint(s)."""
    _check_host_port(host, port, allow_zero=False)
    if not isinstance(tls, TlsConfig):
        raise TypeError(f"tls must be a TlsConfig, got {type(tls).__name__}")
    timeout = _check_timeout(timeout, "timeout")
    ctx = tls.client_context()
    where = f"{host}:{port}"
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise ChannelTimeout(f"connecting to {where} timed out after {timeout:g} s") from None
    except OSError as e:
        raise HandshakeError(f"cannot connect to {where}: {e.strerror or e}") from None
    sock = _tls_handshake(raw, ctx, server_side=False, who=where, timeout=timeout,
                          server_hostname=tls.server_name)
    try:
        fp = tls.check_peer(sock.getpeercert(binary_form=True), "server")
    except Exception:
        sock.close()
        raise
    return TlsChannel(sock, peer_fingerprint=fp, peer_address=(host, port), meter=meter,
                      max_frame_size=max_frame_size, timeout=recv_timeout, party="client")


class Listener:
    """A TLS server socket: `accept()` returns one `TlsChannel` per client.

    `accept()` runs the handshake on the calling thread; a server that must not be held up
    by a slow peer takes the TCP connection with `accept_socket()` and runs `handshake()` on
    another thread (protocols.transport.server does). port=0 picks a free port (see
    `address`). Use "::1" for IPv6 loopback."""

    def __init__(self, host: str, port: int, tls: TlsConfig, *, backlog: int = 128,
                 handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                 recv_timeout: float | None = DEFAULT_TIMEOUT,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        _check_host_port(host, port, allow_zero=True)
        if not isinstance(tls, TlsConfig):
            raise TypeError(f"tls must be a TlsConfig, got {type(tls).__name__}")
        self.tls = tls
        self._ctx = tls.server_context()
        self.handshake_timeout = _check_timeout(handshake_timeout, "handshake_timeout")
        self.recv_timeout = _check_timeout(recv_timeout, "recv_timeout")
        self.max_frame_size = check_max_frame_size(max_frame_size)
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
            self._sock = socket.create_server((host, port), family=family, backlog=backlog)
        except OSError as e:
            raise HandshakeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def port(self) -> int:
        return self.address[1]

    def accept_socket(self, timeout: float | None = None) -> tuple[socket.socket, tuple]:
        """The next TCP connection (no handshake yet): (socket, address)."""
        timeout = _check_timeout(timeout)
        self._sock.settimeout(timeout)
        try:
            raw, addr = self._sock.accept()
        except TimeoutError:
            raise ChannelTimeout(f"no client connected to {self.address[0]}:{self.port} "
                                 f"within {timeout:g} s") from None
        return raw, addr

    def handshake(self, raw: socket.socket, addr: tuple, *, meter: CostMeter | None = None) -> TlsChannel:
        """The TLS handshake on an accepted connection, within `handshake_timeout` seconds;
        with mutual TLS, the client's certificate is checked against the pins."""
        sock = _tls_handshake(raw, self._ctx, server_side=True, who=f"client {addr[0]}:{addr[1]}",
                              timeout=self.handshake_timeout)
        fp = ""
        if self.tls.require_client_cert:
            try:
                fp = self.tls.check_peer(sock.getpeercert(binary_form=True), "client")
            except Exception:
                sock.close()
                raise
        return TlsChannel(sock, peer_fingerprint=fp, peer_address=addr[:2], meter=meter,
                          max_frame_size=self.max_frame_size, timeout=self.recv_timeout, party="server")

    def accept(self, timeout: float | None = None, *, meter: CostMeter | None = None) -> TlsChannel:
        """Wait (at most `timeout` s; None: forever) for a client, then run the handshake.
        A failed handshake raises HandshakeError / PeerVerificationError / ChannelTimeout and
        leaves the listener usable."""
        raw, addr = self.accept_socket(timeout)
        return self.handshake(raw, addr, meter=meter)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Listener(address={self.address}, require_client_cert={self.tls.require_client_cert})"
