"""Exceptions raised by the transport layer.

Every error is a `TransportError`, so a party can catch the whole family at the edge of a
protocol run. The message always names the offending value and, where there is one, the fix.

    TransportError
    ├── FrameError            malformed bytes: bad magic, version, type, flags, length, array header
    ├── PeerDisconnected      the peer closed the connection (cleanly with BYE, or mid-frame)
    ├── ChannelTimeout        no progress from the peer within the timeout (also a TimeoutError)
    ├── ProtocolError         well-formed frame, but not what the protocol expected here
    │   └── RemoteError       the peer sent an ERROR frame; its reason is the message
    ├── HandshakeError        TCP connect or TLS handshake failed (incl. a refused client cert)
    └── PeerVerificationError the peer's certificate does not match the pinned fingerprint
"""
from __future__ import annotations


class TransportError(Exception):
    """Base class of all transport errors."""


class FrameError(TransportError):
    """The bytes on the wire are not a valid frame (bad magic, version, type, flags or length)."""


class PeerDisconnected(TransportError):
    """The peer closed the connection: cleanly (BYE frame / end of stream) or in the middle of a frame."""


class ChannelTimeout(TransportError, TimeoutError):
    """The peer made no progress (no byte sent or read) within the channel's timeout."""


class ProtocolError(TransportError):
    """A well-formed frame arrived that the protocol did not expect (type, dtype or shape)."""


class RemoteError(ProtocolError):
    """The peer reported an error with an ERROR frame; `reason` holds its text."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the peer reported an error: {reason}")


class HandshakeError(TransportError):
    """Connecting or the TLS handshake failed (network error, TLS version, refused certificate)."""


class PeerVerificationError(TransportError):
    """The peer's certificate fingerprint is not the pinned one."""
