"""One-time preprocessing material: containers that refuse reuse, and labeled randomness.

Correlated randomness used twice leaks (two openings under one mask reveal the difference
of two secrets), so reuse is an error enforced here, not a convention: every item can be
taken once, and a bundle can be started once.

Halves of one bundle belong together: the dealer gives both the same fresh `bundle_id`, and
`bundle_digest` binds it to the plan and the batch. Before the offline phase the client
and the server run `confirm_bundle`, a one-round commitment exchange, and refuse to go on
when their halves come from different bundles (a dealer that restarted between the two
requests would otherwise make two unrelated halves, and the inference a silent wrong answer).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
import threading

import numpy as np
import pi_native

from protocols.transport.frame import MessageType

MATERIAL_FORMAT = 4     # 4: FSS keys of version 2 (ring words in ceil(l/8) bytes)
# Wire form: MAGIC, the header's length (u64 LE), the JSON header (party, plan digest, batch,
# bundle id and digest, and per item: key, kind, dtype, shape, offset, length), then the items'
# raw bytes, each at a 64-byte-aligned offset. One copy to write, none to read: items are views
# of the payload.
MAGIC = b"PIMAT\x00\x03\n"
ALIGN = 64
DTYPES = ("|u1", "<u8", "<i8", "|i1", "<f8")      # what material items are made of


class MaterialReuseError(RuntimeError):
    """Preprocessing material was used a second time."""


class MaterialMismatch(ValueError):
    """Material does not belong to this plan, party, batch or bundle."""


class MaterialTooLarge(ValueError):
    """Building material went past the bytes reserved for it."""


class _Allowance:
    """Bytes the two halves of one bundle may still take (shared, thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def take(self, n: int, key: str) -> None:
        with self._lock:
            self.left -= n
            if self.left < 0:
                raise MaterialTooLarge(f"the preprocessing grew past its limit of {self.max_bytes / 1e6:.1f} MB "
                                       f"(at item {key!r}); use a smaller batch or raise limits.max_material_bytes")


def take_once(items: dict, taken: set, key, reused: str, missing: Exception):
    """Pops `key` from `items` and remembers it in `taken`: one-time material is handed out
    once. A second take raises MaterialReuseError(reused); a key never present raises `missing`."""
    if key in taken:
        raise MaterialReuseError(reused)
    if key not in items:
        raise missing
    taken.add(key)
    return items.pop(key)


def fresh_seed() -> bytes:
    """16 bytes from the OS CSPRNG."""
    return os.urandom(16)


class SeedStream:
    """Labeled pseudorandom ring elements from one secret seed: `draw(label, n)` is
    AES-CTR under the key SHA-256(seed ‖ label)[:16], so the dealer and a party holding the
    same seed derive the same values without agreeing on an order. Each label is drawn once."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 16:
            raise ValueError(f"seed must be 16 bytes, got {len(seed)}")
        self._seed = bytes(seed)
        self._used: set[str] = set()

    def draw(self, label: str, n: int) -> np.ndarray:
        if label in self._used:
            raise MaterialReuseError(f"randomness {label!r} was already drawn from this seed")
        self._used.add(label)
        key = hashlib.sha256(self._seed + label.encode()).digest()[:16]
        return pi_native.Prg(key).random_u64(n)


class Material:
    """One party's preprocessing for one inference of one plan at one batch size."""

    def __init__(self, party: str, plan_digest: str, batch: int, items: dict | None = None,
                 bundle_id: str | None = None, allowance: _Allowance | None = None) -> None:
        if party not in ("client", "server"):
            raise ValueError(f"party must be 'client' or 'server', got {party!r}")
        self.party, self.plan_digest, self.batch = party, plan_digest, batch
        self.bundle_id = bundle_id if bundle_id is not None else os.urandom(16).hex()
        self._items: dict[str, np.ndarray | bytes] = dict(items or {})
        self._taken: set[str] = set()
        self._started = False
        self._allowance = allowance
        self.backing = None   # from_bytes: the buffer the items are views of (engine.discard_spent)

    @classmethod
    def pair(cls, plan_digest: str, batch: int, max_bytes: int | None = None) -> tuple[Material, Material]:
        """Empty client and server halves of one fresh bundle; with `max_bytes`, putting more
        than that into the two together raises MaterialTooLarge."""
        bundle_id = os.urandom(16).hex()
        allowance = None if max_bytes is None else _Allowance(max_bytes)
        return (cls("client", plan_digest, batch, bundle_id=bundle_id, allowance=allowance),
                cls("server", plan_digest, batch, bundle_id=bundle_id, allowance=allowance))

    @property
    def bundle_digest(self) -> str:
        """SHA-256 binding the bundle id to the plan and the batch (the same in both halves)."""
        return bundle_digest(self.bundle_id, self.plan_digest, self.batch)

    def put(self, key: str, value) -> None:
        if key in self._items or key in self._taken:
            raise KeyError(f"material item {key!r} already present")
        if self._allowance is not None:
            self._allowance.take(value.nbytes if isinstance(value, np.ndarray) else len(value), key)
        self._items[key] = value

    def take(self, key: str):
        return take_once(self._items, self._taken, key, f"{self.party} material {key!r} was already consumed",
                         MaterialMismatch(f"{self.party} material has no item {key!r}"))

    def has(self, key: str) -> bool:
        return key in self._items

    def start(self, plan_digest: str, batch: int) -> None:
        """Marks the bundle used for one inference; checks it fits that inference."""
        if self._started:
            raise MaterialReuseError(f"{self.party} preprocessing bundle was already used for an inference")
        if plan_digest != self.plan_digest:
            raise MaterialMismatch(f"material was made for plan {self.plan_digest[:12]}, not {plan_digest[:12]}")
        if batch != self.batch:
            raise MaterialMismatch(f"material was made for batch {self.batch}, not {batch}")
        self._started = True

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes if isinstance(v, np.ndarray) else len(v) for v in self._items.values())

    def to_bytes(self) -> bytearray:
        if self._started or self._taken:
            raise MaterialReuseError("material that was (partly) used cannot be serialized again")
        arrays = {k: np.ascontiguousarray(v) if isinstance(v, np.ndarray) else np.frombuffer(v, np.uint8)
                  for k, v in self._items.items()}
        entries, offset = [], 0
        for k, a in arrays.items():
            a = arrays[k] = a.astype(a.dtype.newbyteorder("<"), copy=False)
            entries.append([k, "array" if isinstance(self._items[k], np.ndarray) else "bytes", a.dtype.str,
                            list(a.shape), offset, a.nbytes])
            offset += -(-a.nbytes // ALIGN) * ALIGN
        header = json.dumps({"format": MATERIAL_FORMAT, "party": self.party, "plan": self.plan_digest,
                             "batch": self.batch, "bundle": self.bundle_id, "digest": self.bundle_digest,
                             "items": entries}).encode()
        start = -(-(len(MAGIC) + 8 + len(header)) // ALIGN) * ALIGN
        out = bytearray(start + offset)
        out[:len(MAGIC) + 8 + len(header)] = MAGIC + struct.pack("<Q", len(header)) + header
        view = memoryview(out)
        for (_, _, _, _, off, n), a in zip(entries, arrays.values()):
            view[start + off:start + off + n] = a.reshape(-1).view(np.uint8)
        return out

    @classmethod
    def from_bytes(cls, data) -> Material:
        """Parses to_bytes' output; items are views of `data` (pass a bytearray to get writable
        arrays). Malformed input raises MaterialMismatch."""
        view = memoryview(data).cast("B")
        try:
            if bytes(view[:len(MAGIC)]) != MAGIC:
                raise ValueError("not preprocessing material of this version (bad magic)")
            (hlen,) = struct.unpack("<Q", view[len(MAGIC):len(MAGIC) + 8])
            end = len(MAGIC) + 8 + hlen
            if end > len(view):
                raise ValueError("header runs past the end")
            header = json.loads(bytes(view[len(MAGIC) + 8:end]).decode())
            start = -(-end // ALIGN) * ALIGN
            items = {}
            for key, kind, dtype, shape, off, n in header["items"]:
                if dtype not in DTYPES or kind not in ("array", "bytes"):
                    raise ValueError(f"item {key!r}: unsupported dtype {dtype!r} or kind {kind!r}")
                dt = np.dtype(dtype)
                if off < 0 or n < 0 or off % ALIGN or start + off + n > len(view) or \
                        n != dt.itemsize * int(np.prod(shape, dtype=np.int64)):
                    raise ValueError(f"item {key!r}: inconsistent offset, length or shape")
                chunk = view[start + off:start + off + n]
                items[key] = np.frombuffer(chunk, dt).reshape(shape) if kind == "array" else chunk
        except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
            raise MaterialMismatch(f"malformed preprocessing material: {exc}") from exc
        if header.get("format") != MATERIAL_FORMAT:
            raise MaterialMismatch(f"material format {header.get('format')} is not supported "
                                   f"(this build reads format {MATERIAL_FORMAT}); run the same release everywhere")
        try:
            m = cls(header["party"], header["plan"], int(header["batch"]), items, bundle_id=str(header["bundle"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MaterialMismatch(f"malformed preprocessing material header: {exc}") from None
        m.backing = data
        if header.get("digest") != m.bundle_digest:
            raise MaterialMismatch("the preprocessing material's bundle digest does not match its id, plan and "
                                   "batch: the material is corrupt")
        return m


def bundle_digest(bundle_id: str, plan_digest: str, batch: int) -> str:
    return hashlib.sha256(f"pi-bundle\0{bundle_id}\0{plan_digest}\0{batch}".encode()).hexdigest()


def _commitment(party: str, digest: str) -> bytes:
    return hashlib.sha256(f"pi-bundle-commit\0{party}\0{digest}".encode()).digest()


def confirm_bundle(chan, material: Material) -> None:
    """Both parties call this before the offline phase: one round in which each sends a
    commitment to its half's bundle digest (bound to its role, so echoing the peer's value
    does not pass) and checks the peer's. Halves of different bundles raise MaterialMismatch
    before anything derived from them is sent."""
    other = "server" if material.party == "client" else "client"
    theirs = chan.exchange(MessageType.DATA, _commitment(material.party, material.bundle_digest))
    if not hmac.compare_digest(theirs, _commitment(other, material.bundle_digest)):
        raise MaterialMismatch(
            "the client and the server hold halves of different preprocessing bundles (the dealer restarted "
            "or lost the session between their requests); this inference is refused before it starts: run it again")


def plan_digest(plan_dict: dict) -> str:
    """SHA-256 of the canonical JSON of a plan's public description."""
    return hashlib.sha256(json.dumps(plan_dict, sort_keys=True, default=str).encode()).hexdigest()
