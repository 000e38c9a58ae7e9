"""Transport: frames, in-process and TLS channels, certificates. Loopback only, short timeouts.

Over 500 lines: one suite for the one transport stack, in the order of docs/transport.md."""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import socket
import ssl
import stat
import struct
import time

import numpy as np
import pytest

from protocols.cost import CostMeter
from protocols.transport import (
    DEFAULT_MAX_FRAME_SIZE,
    HEADER_SIZE,
    MAGIC,
    ChannelTimeout,
    FrameError,
    HandshakeError,
    InProcessChannel,
    Listener,
    MessageType,
    PeerDisconnected,
    PeerVerificationError,
    ProtocolError,
    RemoteError,
    TlsConfig,
    TransportError,
    connect,
    decode_array,
    decode_frame,
    encode_array,
    encode_frame,
    fingerprint,
    normalize_fingerprint,
    parse_header,
    write_self_signed,
)
from protocols.transport.certs import generate_self_signed

LOOPBACK = "127.0.0.1"
T = 5.0  # generous bound for anything that should happen at once


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    return {name: write_self_signed(d, name) for name in ("server", "client", "other")}


@pytest.fixture()
def pool():
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        yield ex


def array_frame(arr, msg_type=MessageType.ARRAY):
    head, data = encode_array(arr)
    return encode_frame(msg_type, head + bytes(data), flags=1)


# ============================================================================ frames

def test_header_layout_is_16_bytes_big_endian():
    f = encode_frame(MessageType.DATA, b"abc")
    assert len(f) == HEADER_SIZE + 3 == 19
    assert f[:4] == MAGIC and f[4] == 1 and f[5] == MessageType.DATA
    assert struct.unpack("!H", f[6:8])[0] == 0 and struct.unpack("!Q", f[8:16])[0] == 3


@pytest.mark.parametrize("mt", list(MessageType))
@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(256)) * 5])
def test_frame_round_trip(mt, payload):
    f = decode_frame(encode_frame(mt, payload))
    assert f.msg_type == mt and f.payload == payload and f.flags == 0


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                                   "int64", "uint64", "float16", "float32", "float64"])
def test_array_round_trip_all_dtypes(dtype):
    rng = np.random.default_rng(0)
    a = (rng.integers(0, 100, size=(3, 4, 5)) % 2 if dtype == "bool" else rng.integers(0, 100, (3, 4, 5))).astype(dtype)
    head, data = encode_array(a)
    b = decode_array(head + bytes(data), dtype=dtype, shape=(3, 4, 5))
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
    assert b.flags.writeable


def test_array_edge_cases():
    for a in [np.zeros((), np.uint64) + 7, np.zeros((0, 3), np.int32),
              np.arange(20, dtype=np.uint64).reshape(4, 5)[:, ::2],  # not contiguous
              np.arange(6, dtype=">i8")]:                            # big-endian input
        head, data = encode_array(a)
        b = decode_array(head + bytes(data))
        assert b.shape == a.shape and np.array_equal(a, b)
    with pytest.raises(ValueError, match="dtype object cannot be sent"):
        encode_array(np.array([object()]))
    with pytest.raises(ValueError, match="complex128 cannot be sent"):
        encode_array(np.zeros(2, complex))


def test_array_size_on_the_wire():
    # 16 frame header + 4 array header + 8 per dimension + data
    assert len(array_frame(np.zeros(3, np.uint64))) == 16 + 4 + 8 + 24
    assert len(array_frame(np.zeros((2, 5), np.uint8))) == 16 + 4 + 16 + 10


def test_garbage_bytes_are_refused():
    with pytest.raises(FrameError, match=r"bad frame magic b'GET ' \(expected b'\\x89PIF'\)"):
        decode_frame(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(FrameError, match="bad frame magic"):
        decode_frame(bytes(range(100, 164)))


def test_wrong_magic_version_type_flags():
    good = bytearray(encode_frame(MessageType.DATA, b"hi"))
    bad = bytearray(good); bad[0:4] = b"XPIF"
    with pytest.raises(FrameError, match="bad frame magic b'XPIF'"):
        decode_frame(bad)
    bad = bytearray(good); bad[4] = 7
    with pytest.raises(FrameError, match="unsupported frame version 7 .*version 1"):
        decode_frame(bad)
    bad = bytearray(good); bad[5] = 200
    with pytest.raises(FrameError, match="unknown message type 200"):
        decode_frame(bad)
    bad = bytearray(good); bad[6:8] = b"\x80\x00"
    with pytest.raises(FrameError, match="unknown frame flags 0x8000"):
        decode_frame(bad)
    with pytest.raises(FrameError, match="unknown message type 99"):
        encode_frame(99, b"")


def test_oversized_frames_name_both_sizes():
    with pytest.raises(FrameError, match=r"outgoing frame of 116 bytes .* exceeds max_frame_size=64 bytes"):
        encode_frame(MessageType.DATA, b"x" * 100, max_frame_size=64)
    hdr = struct.pack("!4sBBHQ", MAGIC, 1, MessageType.DATA, 0, 1 << 40)
    with pytest.raises(FrameError, match=rf"incoming frame of {(1 << 40) + 16} bytes .* "
                                         rf"exceeds max_frame_size={DEFAULT_MAX_FRAME_SIZE} bytes"):
        parse_header(hdr)
    with pytest.raises(ValueError, match="max_frame_size=10 is out of range"):
        InProcessChannel.pair(max_frame_size=10)


def test_truncated_frames():
    f = encode_frame(MessageType.RESULT, b"0123456789")
    with pytest.raises(FrameError, match="truncated frame: 5 bytes, less than the 16-byte header"):
        decode_frame(f[:5])
    with pytest.raises(FrameError, match="announces 10 payload bytes of a RESULT frame, only 4 present"):
        decode_frame(f[:20])
    with pytest.raises(FrameError, match="2 trailing bytes"):
        decode_frame(f + b"zz")


def test_malformed_array_payloads():
    head, data = encode_array(np.arange(4, dtype=np.uint64))
    p = head + bytes(data)
    with pytest.raises(FrameError, match="unknown array dtype code 99"):
        decode_array(bytes([99]) + p[1:])
    with pytest.raises(FrameError, match=r"needs 32 data bytes, the payload carries 31"):
        decode_array(p[:-1])
    with pytest.raises(FrameError, match="shorter than its 4-byte header"):
        decode_array(b"\x01")
    with pytest.raises(ProtocolError, match=r"expected dtype int64, received uint64"):
        decode_array(p, dtype=np.int64)
    with pytest.raises(ProtocolError, match=r"expected shape \(2, 2\), received \(4,\)"):
        decode_array(p, shape=(2, 2))
    assert decode_array(p, shape=(None,)).shape == (4,)


# ============================================================================ in-process channels

def test_in_process_send_recv_and_checks():
    a, b = InProcessChannel.pair(timeout=T)
    a.send(MessageType.SPEC, b'{"layers": 3}')
    assert b.recv(MessageType.SPEC) == b'{"layers": 3}'
    a.send_array(np.arange(6, dtype=np.uint64).reshape(2, 3))
    with pytest.raises(ProtocolError, match=r"expected shape \(3, 2\), received \(2, 3\)"):
        b.recv_array(np.uint64, (3, 2))
    a.send_array(np.arange(6, dtype=np.int32))
    with pytest.raises(ProtocolError, match="expected dtype uint64, received int32"):
        b.recv_array(np.uint64)
    a.send(MessageType.DATA, b"raw")
    with pytest.raises(ProtocolError, match="expected a frame of type RESULT, received DATA"):
        b.recv(MessageType.RESULT)
    a.send(MessageType.DATA, b"raw")
    with pytest.raises(ProtocolError, match="expected a frame of type ARRAY, received DATA"):
        b.recv_array()
    a.send(MessageType.RESULT, b"raw")
    with pytest.raises(ProtocolError, match="expected an array in the RESULT frame, received 3 raw bytes"):
        b.recv_array(expect=MessageType.RESULT)
    with pytest.raises(ValueError, match="use send_array"):
        a.send(MessageType.ARRAY, b"")
    with pytest.raises(TypeError, match="use send_array"):
        a.send(MessageType.DATA, np.zeros(2))
    assert a.send_array(np.ones((5, 2)), MessageType.RESULT) == 16 + 4 + 16 + 80
    out = b.recv_array(np.float64, (None, 2), expect=MessageType.RESULT)
    assert out.shape == (5, 2) and out.flags.writeable
    a.close(); b.close()


def test_error_frames_and_bye():
    a, b = InProcessChannel.pair(timeout=T)
    a.send_error("weights file missing")
    with pytest.raises(RemoteError, match="the peer reported an error: weights file missing") as e:
        b.recv()
    assert e.value.reason == "weights file missing"
    a.close()
    with pytest.raises(PeerDisconnected, match=r"closed the channel \(BYE\) while we expected a frame of type RESULT"):
        b.recv(MessageType.RESULT)
    with pytest.raises(PeerDisconnected):
        b.send(MessageType.DATA, b"late")
    with pytest.raises(TransportError, match="the channel is closed"):
        a.send(MessageType.DATA, b"")


def test_context_manager_reports_failure_to_the_peer(pool):
    a, b = InProcessChannel.pair(timeout=T)

    def party_a():
        with a:
            raise KeyError("secret value 42")

    with pytest.raises(KeyError):
        pool.submit(party_a).result(T)
    with pytest.raises(RemoteError) as e:
        b.recv()
    assert "KeyError" in e.value.reason and "42" not in e.value.reason  # class name only


def test_in_process_garbage_breaks_the_channel():
    a, b = InProcessChannel.pair(timeout=T)
    a._write([memoryview(b"\x00" * 32)], T)
    with pytest.raises(FrameError, match=r"bad frame magic b'\\x00\\x00\\x00\\x00'"):
        b.recv()
    with pytest.raises(TransportError, match="can no longer receive .* malformed frame header"):
        b.recv()


def test_in_process_disconnect_mid_frame():
    a, b = InProcessChannel.pair(timeout=T)
    frame = array_frame(np.arange(100, dtype=np.uint64))
    a._write([memoryview(frame[:50])], T)
    a._close_transport()
    with pytest.raises(PeerDisconnected, match=r"mid-frame: 34 of 812 bytes of the 812-byte payload of the ARRAY frame"):
        b.recv_array()


def test_in_process_recv_timeout_keeps_channel_usable():
    a, b = InProcessChannel.pair(timeout=0.1)
    t0 = time.monotonic()
    with pytest.raises(ChannelTimeout, match=r"no data from the peer for 0.1 s .* type RESULT"):
        b.recv(MessageType.RESULT)
    assert time.monotonic() - t0 < T
    with pytest.raises(TimeoutError):  # ChannelTimeout is a TimeoutError too
        b.recv(timeout=0.05)
    a.send(MessageType.RESULT, b"ok")
    assert b.recv(MessageType.RESULT) == b"ok"


def test_in_process_frame_size_limit_on_both_sides():
    a, _ = InProcessChannel.pair(max_frame_size=64, timeout=T)
    with pytest.raises(FrameError, match="outgoing frame of 116 bytes"):
        a.send(MessageType.DATA, b"x" * 100)
    assert a.meter.bytes_sent == 0
    big_a, small_b = InProcessChannel.pair(timeout=T)
    small_b.max_frame_size = 64
    big_a.send(MessageType.DATA, b"x" * 100)
    with pytest.raises(FrameError, match="incoming frame of 116 bytes .* max_frame_size=64"):
        small_b.recv()


# ============================================================================ identical accounting

def conversation(ch, role: str) -> np.ndarray:
    """A small protocol: hello, spec, offline material, three online gate rounds, result."""
    m = ch.meter
    rng = np.random.default_rng(1 if role == "client" else 2)
    with m.scope(layer="session", op="setup", phase="offline"):
        hello = ch.exchange(MessageType.HELLO, f"pi/1 {role}".encode())
        assert hello.startswith(b"pi/1 ")
        if role == "server":
            ch.send(MessageType.SPEC, b'{"layers": ["conv1", "relu1", "fc"]}')
        else:
            ch.recv(MessageType.SPEC)
    with m.scope(layer="conv1", op="linear", phase="offline"):
        if role == "server":
            ch.send_array(rng.integers(0, 2**63, (8, 3, 3, 3), dtype=np.uint64), MessageType.PREPROCESSING)
            ch.recv(MessageType.ACK)
        else:
            ch.recv_array(np.uint64, (8, 3, 3, 3), expect=MessageType.PREPROCESSING)
            ch.send(MessageType.ACK)
    x = rng.integers(0, 2**63, 1000, dtype=np.uint64)
    with m.scope(phase="online"):
        for layer, op in (("conv1", "linear"), ("relu1", "relu"), ("fc", "linear")):
            with m.scope(layer=layer, op=op):
                x = x + ch.exchange_array(x)
        with m.scope(layer="output", op="io"):
            if role == "server":
                ch.send_array(x[:10], MessageType.RESULT)
            else:
                x = ch.recv_array(np.uint64, (10,), expect=MessageType.RESULT)
    return x


def counts(report):
    return [(r.layer, r.op, r.phase, r.bytes_sent, r.bytes_received, r.messages_sent,
             r.messages_received, r.rounds) for r in report.per_layer]


def test_in_process_and_tls_count_identically(certs, pool):
    # in-process
    a, b = InProcessChannel.pair(CostMeter("client"), CostMeter("server"), timeout=T)
    fs = pool.submit(conversation, b, "server")
    yc = conversation(a, "client")
    ys = fs.result(T)
    assert np.array_equal(yc, ys[:10])
    mem = (a.meter.report(), b.meter.report())
    # TLS, mutual, pinned both ways
    srv = TlsConfig(certs["server"].cert, certs["server"].key, require_client_cert=True,
                    peer_cert=certs["client"].cert)
    cli = TlsConfig(certs["client"].cert, certs["client"].key, peer_fingerprint=certs["server"].fingerprint)
    with Listener(LOOPBACK, 0, srv, recv_timeout=T) as lst:
        fa = pool.submit(lst.accept, T, meter=CostMeter("server"))
        tc = connect(LOOPBACK, lst.port, cli, timeout=T, recv_timeout=T, meter=CostMeter("client"))
        ts = fa.result(T)
        assert tc.tls_version == "TLSv1.3" and ts.tls_version == "TLSv1.3"
        assert tc.peer_fingerprint == certs["server"].fingerprint
        assert ts.peer_fingerprint == certs["client"].fingerprint
        fs = pool.submit(conversation, ts, "server")
        conversation(tc, "client")
        fs.result(T)
    tls = (tc.meter.report(), ts.meter.report())
    for m, t in zip(mem, tls):
        assert counts(m) == counts(t)
    client, server = mem
    # exact numbers for one gate row: 1000 uint64 + 4 + 8 array header + 16 frame header
    row = next(r for r in client.per_layer if r.layer == "relu1")
    assert (row.bytes_sent, row.bytes_received, row.rounds) == (8028, 8028, 1)
    # rounds: client online = 3 exchanges (the result is only received)
    assert client.rounds == 3 and server.rounds == 4
    merged = client.merge(server)
    assert merged.rounds == 4
    assert merged.online_bytes == merged.online_bytes_received == client.online_bytes + server.online_bytes
    for ch in (a, b, tc, ts):
        ch.close()


# ============================================================================ TLS

def tls_pair(pool, srv_cfg, cli_cfg, **kw):
    lst = Listener(LOOPBACK, 0, srv_cfg, recv_timeout=kw.pop("recv_timeout", T))
    fut = pool.submit(lst.accept, T)
    try:
        c = connect(LOOPBACK, lst.port, cli_cfg, timeout=T, recv_timeout=T, **kw)
    except Exception:
        with contextlib.suppress(Exception):
            fut.result(T)
        lst.close()
        raise
    return lst, fut, c


def test_wrong_fingerprint_is_refused(certs, pool):
    srv = TlsConfig(certs["server"].cert, certs["server"].key)
    wrong = certs["other"].fingerprint
    cli = TlsConfig(peer_fingerprint=wrong)
    with Listener(LOOPBACK, 0, srv) as lst:
        fut = pool.submit(lst.accept, T)
        with pytest.raises(PeerVerificationError) as e:
            connect(LOOPBACK, lst.port, cli, timeout=T)
        msg = str(e.value)
        assert f"expected {wrong}" in msg and f"got {certs['server'].fingerprint}" in msg
        ch = fut.result(T)  # the server's side completed its handshake; the client hung up
        with pytest.raises(PeerDisconnected):
            ch.recv(timeout=T)
        ch.close()


def test_peer_cert_pin_and_ed25519(tmp_path, pool):
    s = write_self_signed(tmp_path, "ed_server", key_type="ed25519")
    srv = TlsConfig(s.cert, s.key)
    lst, fut, c = tls_pair(pool, srv, TlsConfig(peer_cert=s.cert))  # pin derived from the cert file
    server = fut.result(T)
    c.send(MessageType.DATA, b"ping")
    assert server.recv(MessageType.DATA) == b"ping"
    assert c.peer_fingerprint == s.fingerprint
    c.close(); server.close(); lst.close()


def test_mutual_tls_refuses_client_without_certificate(certs, pool):
    srv = TlsConfig(certs["server"].cert, certs["server"].key, require_client_cert=True,
                    peer_cert=certs["client"].cert)
    no_cert = TlsConfig(peer_fingerprint=certs["server"].fingerprint)

    def refused(lst, client_tls, server_says, client_says):
        """The server's accept fails with `server_says`; the client sees a refusal at its next read."""
        fut = pool.submit(lst.accept, T)
        try:  # TLS 1.3: the client may finish its handshake before the server checks its certificate
            c = connect(LOOPBACK, lst.port, client_tls, timeout=T, recv_timeout=T)
        except HandshakeError:
            c = None
        with pytest.raises(HandshakeError, match=server_says):
            fut.result(T)
        if c is not None:
            with pytest.raises(TransportError, match=client_says):
                c.recv(timeout=T)
            c.close()

    with Listener(LOOPBACK, 0, srv) as lst:
        refused(lst, no_cert, "client sent no certificate and this server requires one",
                "refused this party's TLS certificate|connection")
        # a client with an untrusted certificate is refused too; the listener keeps working
        other = TlsConfig(certs["other"].cert, certs["other"].key, peer_fingerprint=certs["server"].fingerprint)
        refused(lst, other, "certificate", "")


def test_tls_disconnect_mid_frame_and_timeouts(certs, pool):
    srv = TlsConfig(certs["server"].cert, certs["server"].key)
    cli = TlsConfig(peer_fingerprint=certs["server"].fingerprint)
    lst, fut, c = tls_pair(pool, srv, cli)
    s = fut.result(T)
    with pytest.raises(ChannelTimeout, match="no data from the peer for 0.2 s"):
        c.recv(timeout=0.2)
    s.send(MessageType.DATA, b"still usable")
    assert c.recv(MessageType.DATA) == b"still usable"
    frame = encode_frame(MessageType.RESULT, b"z" * 1000)
    s._write([memoryview(frame[:HEADER_SIZE + 300])], T)
    s._close_transport()
    with pytest.raises(PeerDisconnected, match="mid-frame: 300 of 1000 bytes"):
        c.recv(MessageType.RESULT)
    c.close(); lst.close()


def test_tls_handshake_timeout_and_garbage_client(certs, pool):
    cli = TlsConfig(peer_fingerprint=certs["server"].fingerprint)
    with socket.create_server((LOOPBACK, 0)) as mute:  # accepts TCP (backlog), never speaks TLS
        with pytest.raises(ChannelTimeout, match="TLS handshake .* timed out after 0.3 s"):
            connect(LOOPBACK, mute.getsockname()[1], cli, timeout=0.3)
    srv = TlsConfig(certs["server"].cert, certs["server"].key)
    with Listener(LOOPBACK, 0, srv, handshake_timeout=T) as lst:
        fut = pool.submit(lst.accept, T)
        with socket.create_connection((LOOPBACK, lst.port), timeout=T) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(HandshakeError, match="TLS handshake with client 127.0.0.1:"):
                fut.result(T)
        with pytest.raises(ChannelTimeout, match="no client connected"):
            lst.accept(timeout=0.1)


def test_tls_refuses_old_tls_versions(certs, pool):
    srv = TlsConfig(certs["server"].cert, certs["server"].key)
    with Listener(LOOPBACK, 0, srv) as lst:
        fut = pool.submit(lst.accept, T)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((LOOPBACK, lst.port), timeout=T) as raw:
            with pytest.raises((ssl.SSLError, OSError)):
                ctx.wrap_socket(raw)
        with pytest.raises(HandshakeError):
            fut.result(T)


def test_tls_large_simultaneous_exchange_does_not_deadlock(certs, pool):
    srv = TlsConfig(certs["server"].cert, certs["server"].key)
    lst, fut, c = tls_pair(pool, srv, TlsConfig(peer_fingerprint=certs["server"].fingerprint))
    s = fut.result(T)
    big = np.arange(2_000_000, dtype=np.uint64)  # 16 MB each way, far beyond socket buffers
    fs = pool.submit(s.exchange_array, big + 1)
    got = c.exchange_array(big)
    assert np.array_equal(got, big + 1) and np.array_equal(fs.result(T), big)
    c.close(); s.close(); lst.close()


def test_ipv6_loopback(certs, pool):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    srv = TlsConfig(certs["server"].cert, certs["server"].key)
    try:
        lst = Listener("::1", 0, srv)
    except HandshakeError:
        pytest.skip("::1 not available")
    with lst:
        fut = pool.submit(lst.accept, T)
        c = connect("::1", lst.port, TlsConfig(peer_fingerprint=certs["server"].fingerprint), timeout=T)
        s = fut.result(T)
        s.send_array(np.arange(3, dtype=np.int64))
        assert c.recv_array(np.int64, (3,)).tolist() == [0, 1, 2]
        c.close(); s.close()


# ============================================================================ certificates and config

def test_certificate_files_and_fingerprints(tmp_path, certs):
    files = certs["server"]
    assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600
    assert files.fingerprint == fingerprint(files.cert) == fingerprint(files.cert.read_text())
    der = ssl.PEM_cert_to_DER_cert(files.cert.read_text())
    assert fingerprint(der) == files.fingerprint
    assert files.fingerprint.startswith("sha256:") and len(files.fingerprint) == 71
    colon = ":".join(files.fingerprint[7:][i:i + 2] for i in range(0, 64, 2)).upper()
    assert normalize_fingerprint(colon) == files.fingerprint
    with pytest.raises(ValueError, match="malformed fingerprint 'sha256:abc'"):
        normalize_fingerprint("sha256:abc")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_self_signed(files.cert.parent, "server")
    cert_pem, key_pem = generate_self_signed("x", key_type="ed25519")
    assert b"BEGIN CERTIFICATE" in cert_pem and b"BEGIN PRIVATE KEY" in key_pem
    with pytest.raises(ValueError, match="unknown key_type 'rsa'"):
        generate_self_signed(key_type="rsa")


def test_tls_config_loading_and_validation(tmp_path, certs):
    y = tmp_path / "party.yaml"
    os.symlink(certs["client"].cert, tmp_path / "me.crt")
    os.symlink(certs["client"].key, tmp_path / "me.key")
    y.write_text(f"tls:\n  cert: me.crt\n  key: me.key\n  peer_fingerprint: {certs['server'].fingerprint}\n")
    cfg = TlsConfig.from_yaml(y)
    assert cfg.cert == tmp_path / "me.crt" and cfg.peer_fingerprint == (certs["server"].fingerprint,)
    assert cfg.pins() == (certs["server"].fingerprint,)
    assert TlsConfig.from_dict(cfg.to_dict()) == cfg
    cfg.client_context()
    with pytest.raises(ValueError, match=r"unknown TLS config keys \['cafile'\]"):
        TlsConfig.from_dict({"cafile": "x"})
    with pytest.raises(ValueError, match="pins no server"):
        TlsConfig().client_context()
    TlsConfig(allow_unpinned=True).client_context()
    with pytest.raises(ValueError, match="require_client_cert=True needs peer_cert"):
        TlsConfig(certs["server"].cert, certs["server"].key, require_client_cert=True).server_context()
    with pytest.raises(ValueError, match="must set require_client_cert=True"):
        TlsConfig(certs["server"].cert, certs["server"].key,
                  peer_fingerprint=certs["client"].fingerprint).server_context()
    with pytest.raises(ValueError, match="both cert and key"):
        TlsConfig(cert=certs["server"].cert)
    with pytest.raises(FileNotFoundError, match="missing.crt does not exist"):
        TlsConfig(tmp_path / "missing.crt", tmp_path / "missing.key").server_context()


# ============================================================================ bounded resources

def test_a_frame_buffer_grows_with_the_bytes_that_arrive():
    """A header announcing 256 MiB followed by 1 KB costs kilobytes, not the announced length."""
    import tracemalloc
    a, b = InProcessChannel.pair(timeout=0.2)
    a._write([memoryview(struct.pack("!4sBBHQ", MAGIC, 1, int(MessageType.DATA), 0, 256 << 20)),
              memoryview(b"x" * 1000)], T)
    tracemalloc.start()
    try:
        with pytest.raises(ChannelTimeout, match=r"1000 of 268435456 bytes arrived"):
            b.recv()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"receiving 1 KB of an announced 256 MiB frame allocated {peak} bytes"
    # Whole frames of any size still arrive intact as the buffer doubles.
    c, d = InProcessChannel.pair(timeout=T)
    for n in (0, 1, 65535, 65536, 65537, 3 * 65536 + 5):
        payload = os.urandom(n)
        c.send(MessageType.DATA, payload)
        assert d.recv(MessageType.DATA) == payload


def test_a_large_frame_is_received_with_one_growth_step(monkeypatch):
    """Past the first 64 KiB the buffer takes the frame's length (each growth step is a fresh
    buffer and a copy; doubling made a 700 KB message cost 2-3x the receiver CPU)."""
    import protocols.transport.channel as channel_mod
    sizes = []

    class CountingNp:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def empty(n, dtype):
            sizes.append(n)
            return np.empty(n, dtype)

    c, d = InProcessChannel.pair(timeout=T)
    payload = os.urandom(3 << 20)
    c.send(MessageType.DATA, payload)
    monkeypatch.setattr(channel_mod, "np", CountingNp())
    assert d.recv(MessageType.DATA) == payload
    assert sizes == [64 * 1024, 3 << 20], sizes


def test_the_handshake_deadline_covers_the_whole_handshake(certs, pool):
    """A client that trickles one byte at a time cannot stretch the handshake past its deadline."""
    srv = TlsConfig(certs["server"].cert, certs["server"].key)
    with Listener(LOOPBACK, 0, srv, handshake_timeout=0.5) as lst:
        fut = pool.submit(lst.accept, T)
        with socket.create_connection((LOOPBACK, lst.port), timeout=T) as raw:
            t0 = time.monotonic()
            hello = b"\x16\x03\x01\x02\x00" + b"\x01" * 512     # a ClientHello, slowly
            with pytest.raises(ChannelTimeout, match="timed out after 0.5 s"):
                for byte in hello:
                    if fut.done():
                        fut.result()
                    try:
                        raw.send(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.05)
                fut.result(T)
            assert time.monotonic() - t0 < 2.0


def test_connection_server_serves_each_peer_on_its_own_thread_and_refuses_beyond_its_cap(certs):
    import threading

    from protocols.transport.server import ConnectionServer
    srv = TlsConfig(certs["server"].cert, certs["server"].key)
    cli = TlsConfig(peer_fingerprint=certs["server"].fingerprint)

    def echo(chan):
        chan.send(MessageType.DATA, chan.recv(MessageType.DATA, timeout=T))

    with Listener(LOOPBACK, 0, srv, handshake_timeout=T) as lst:
        server = ConnectionServer(lst, echo, name="echo server", max_connections=1)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with socket.create_connection((LOOPBACK, lst.port)):     # holds the only slot, silently
                time.sleep(0.2)
                with connect(LOOPBACK, lst.port, cli, timeout=T, recv_timeout=T) as c:
                    with pytest.raises(RemoteError, match=r"echo server is at its connection limit \(1 open"):
                        c.recv()
            time.sleep(0.2)                                           # the silent peer hung up: the slot is free
            with connect(LOOPBACK, lst.port, cli, timeout=T, recv_timeout=T) as c:
                c.send(MessageType.DATA, b"ping")
                assert c.recv(MessageType.DATA) == b"ping"
            assert server.refused == 1
        finally:
            server.stop()


def test_mutual_tls_accepts_each_listed_client_certificate(certs, pool, tmp_path):
    second = write_self_signed(tmp_path, "second_client")
    srv = TlsConfig(certs["server"].cert, certs["server"].key, require_client_cert=True,
                    peer_cert=[certs["client"].cert, second.cert])
    assert srv.pins() == (certs["client"].fingerprint, second.fingerprint)
    for who in (certs["client"], second):
        cli = TlsConfig(who.cert, who.key, peer_fingerprint=certs["server"].fingerprint)
        lst, fut, c = tls_pair(pool, srv, cli)
        assert fut.result(T).peer_fingerprint == who.fingerprint
        c.close(); lst.close()
