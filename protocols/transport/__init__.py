"""Transport between the two parties: frames, channels (in-process and TLS), certificates.

See docs/transport.md for the frame layout, the message types, how bytes and rounds are
counted, and the TLS pinning model.
"""
from protocols.transport.certs import (
                                       CertificateFiles,
                                       TlsConfig,
                                       fingerprint,
                                       generate_self_signed,
                                       normalize_fingerprint,
                                       write_self_signed,
)
from protocols.transport.channel import (
                                       DEFAULT_TIMEOUT,
                                       SAME,
                                       Channel,
                                       InProcessChannel,
                                       Listener,
                                       TlsChannel,
                                       connect,
)
from protocols.transport.errors import (
                                       ChannelTimeout,
                                       FrameError,
                                       HandshakeError,
                                       PeerDisconnected,
                                       PeerVerificationError,
                                       ProtocolError,
                                       RemoteError,
                                       TransportError,
)
from protocols.transport.frame import (
                                       DEFAULT_MAX_FRAME_SIZE,
                                       FRAME_VERSION,
                                       HEADER_SIZE,
                                       MAGIC,
                                       Frame,
                                       MessageType,
                                       decode_array,
                                       decode_frame,
                                       encode_array,
                                       encode_frame,
                                       parse_header,
)

__all__ = [
                                       "DEFAULT_MAX_FRAME_SIZE",
                                       "DEFAULT_TIMEOUT",
                                       "FRAME_VERSION",
                                       "HEADER_SIZE",
                                       "MAGIC",
                                       "SAME",
                                       "CertificateFiles",
                                       "Channel",
                                       "ChannelTimeout",
                                       "Frame",
                                       "FrameError",
                                       "HandshakeError",
                                       "InProcessChannel",
                                       "Listener",
                                       "MessageType",
                                       "PeerDisconnected",
                                       "PeerVerificationError",
                                       "ProtocolError",
                                       "RemoteError",
                                       "TlsChannel",
                                       "TlsConfig",
                                       "TransportError",
                                       "connect",
                                       "decode_array",
                                       "decode_frame",
                                       "encode_array",
                                       "encode_frame",
                                       "fingerprint",
                                       "generate_self_signed",
                                       "normalize_fingerprint",
                                       "parse_header",
                                       "write_self_signed",
]
