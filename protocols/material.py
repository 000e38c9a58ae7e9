"""One-time preprocessing material: containers that refuse reuse, and labeled randomness.

Correlated randomness used twice leaks (two openings under one mask reveal the difference
of two secrets), so reuse is an error enforced here, not a convention: every item can be
taken once, and a bundle can be started once.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np

import pi_native

MATERIAL_FORMAT = 2
# Wire form: MAGIC, the header's length (u64 LE), the JSON header (party, plan digest, batch and
# per item: key, kind, dtype, shape, offset, length), then the items' raw bytes, each at a
# 64-byte-aligned offset. One copy to write, none to read: items are views of the payload.
MAGIC = b"PIMAT\x00\x02\n"
ALIGN = 64
DTYPES = ("|u1", "<u8", "<i8", "|i1", "<f8")      # what material items are made of


class MaterialReuseError(RuntimeError):
    """Preprocessing material was used a second time."""


class MaterialMismatch(ValueError):
    """Material does not belong to this plan, party or batch."""


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

    def __init__(self, party: str, plan_digest: str, batch: int, items: dict | None = None) -> None:
        if party not in ("client", "server"):
            raise ValueError(f"party must be 'client' or 'server', got {party!r}")
        self.party, self.plan_digest, self.batch = party, plan_digest, batch
        self._items: dict[str, np.ndarray | bytes] = dict(items or {})
        self._taken: set[str] = set()
        self._started = False

    def put(self, key: str, value) -> None:
        if key in self._items or key in self._taken:
            raise KeyError(f"material item {key!r} already present")
        self._items[key] = value

    def take(self, key: str):
        if key in self._taken:
            raise MaterialReuseError(f"{self.party} material {key!r} was already consumed")
        if key not in self._items:
            raise MaterialMismatch(f"{self.party} material has no item {key!r}")
        self._taken.add(key)
        return self._items.pop(key)

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
                             "batch": self.batch, "items": entries}).encode()
        start = -(-(len(MAGIC) + 8 + len(header)) // ALIGN) * ALIGN
        out = bytearray(start + offset)
        out[:len(MAGIC) + 8 + len(header)] = MAGIC + struct.pack("<Q", len(header)) + header
        view = memoryview(out)
        for (_, _, _, _, off, n), a in zip(entries, arrays.values()):
            view[start + off:start + off + n] = a.reshape(-1).view(np.uint8)
        return out

    @classmethod
    def from_bytes(cls, data) -> "Material":
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
            raise MaterialMismatch(f"material format {header.get('format')} is not supported")
        return cls(header["party"], header["plan"], int(header["batch"]), items)


def plan_digest(plan_dict: dict) -> str:
    """SHA-256 of the canonical JSON of a plan's public description."""
    return hashlib.sha256(json.dumps(plan_dict, sort_keys=True, default=str).encode()).hexdigest()
