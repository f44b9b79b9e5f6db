"""Candidate encodings of sparse PXD events: bytes per event and encode/decode cost.

Measures, on synthetic events (numpy only), the in-memory cost of encoding each event's
hits as one chunk per column with numcodecs, and decoding them back to hit columns:

* packed pixel index (sensor*192000 + u*768 + v, uint32) delta-coded within the event,
  plus the uint8 charge, with several Blosc codecs/levels/shuffles;
* four separate columns (sensor, u, v, charge);
* the dense uint8 image (the baseline everything is compared with).

It also computes the information bound of the same events if pixels were independent:
per sensor 192,000 * H(occupancy) bits for the positions, plus the charge entropy per hit.
This is the measurement the pool format's codec choice rests on (see
``reference/storage_measurements.md`` for the same study done with earlier versions).

Run:  python benchmarks/encodings.py [--events 200]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numcodecs import LZ4, Blosc, Zstd

from bgcache.geometry import DENSE_EVENT_BYTES, N_SENSORS, PIXELS_PER_SENSOR
from bgcache.hits import SparseEvent
from bgcache.models import load_model

Encoded = list[bytes]


@dataclass
class Candidate:
    name: str
    encode: Callable[[SparseEvent], Encoded]
    decode: Callable[[Encoded], SparseEvent]


def _packed(
    index_codec: Any, charge_codec: Any
) -> tuple[Callable[[SparseEvent], Encoded], Callable[[Encoded], SparseEvent]]:
    def encode(ev: SparseEvent) -> Encoded:
        idx = ev.pixel_index
        delta = np.diff(idx, prepend=np.uint32(0)).astype(np.uint32)
        return [index_codec.encode(delta), charge_codec.encode(ev.charge)]

    def decode(chunks: Encoded) -> SparseEvent:
        delta = np.frombuffer(index_codec.decode(chunks[0]), dtype=np.uint32)
        charge = np.frombuffer(charge_codec.decode(chunks[1]), dtype=np.uint8)
        return SparseEvent.from_pixel_index(
            np.cumsum(delta, dtype=np.uint32), charge, validate=False
        )

    return encode, decode


def _columns(
    codec: Any,
) -> tuple[Callable[[SparseEvent], Encoded], Callable[[Encoded], SparseEvent]]:
    def encode(ev: SparseEvent) -> Encoded:
        return [codec.encode(c) for c in (ev.sensor, ev.u, ev.v, ev.charge)]

    def decode(chunks: Encoded) -> SparseEvent:
        dts = (np.uint8, np.uint16, np.uint16, np.uint8)
        cols = [np.frombuffer(codec.decode(c), dtype=d) for c, d in zip(chunks, dts, strict=True)]
        return SparseEvent(*cols, validate=False)

    return encode, decode


def _dense(
    codec: Any,
) -> tuple[Callable[[SparseEvent], Encoded], Callable[[Encoded], SparseEvent]]:
    def encode(ev: SparseEvent) -> Encoded:
        return [codec.encode(ev.to_dense())]

    def decode(chunks: Encoded) -> SparseEvent:
        img = np.frombuffer(codec.decode(chunks[0]), dtype=np.uint8).reshape(40, 250, 768)
        return SparseEvent.from_dense(img)

    return encode, decode


def candidates() -> list[Candidate]:
    def blosc(cname: str, clevel: int, shuffle: int) -> Blosc:
        return Blosc(cname=cname, clevel=clevel, shuffle=shuffle, blocksize=0)

    u8 = blosc("zstd", 1, Blosc.NOSHUFFLE)
    out = []
    for label, codec in [
        ("blosc zstd1 byteshuffle", blosc("zstd", 1, Blosc.SHUFFLE)),
        ("blosc zstd3 byteshuffle", blosc("zstd", 3, Blosc.SHUFFLE)),
        ("blosc zstd5 byteshuffle", blosc("zstd", 5, Blosc.SHUFFLE)),
        ("blosc zstd1 bitshuffle", blosc("zstd", 1, Blosc.BITSHUFFLE)),
        ("blosc lz4 byteshuffle", blosc("lz4", 5, Blosc.SHUFFLE)),
    ]:
        out.append(Candidate(f"packed delta index + charge, {label}", *_packed(codec, u8)))
    out.append(
        Candidate(
            "packed delta index + charge, zstd1 (no blosc)", *_packed(Zstd(level=1), Zstd(level=1))
        )
    )
    out.append(
        Candidate(
            "four columns, blosc zstd1 byteshuffle", *_columns(blosc("zstd", 1, Blosc.SHUFFLE))
        )
    )
    out.append(Candidate("four columns, lz4", *_columns(LZ4())))
    out.append(Candidate("dense uint8 image, zstd1", *_dense(Zstd(level=1))))
    return out


def entropy_bound_bytes(events: list[SparseEvent]) -> float:
    """Mean bytes/event if pixels were independent with the events' own statistics."""
    occ = np.mean([ev.occupancy() for ev in events], axis=0).clip(1e-12, 1 - 1e-12)
    pos_bits = float(
        np.sum(PIXELS_PER_SENSOR * -(occ * np.log2(occ) + (1 - occ) * np.log2(1 - occ)))
    )
    charges = np.concatenate([ev.charge for ev in events])
    p = np.bincount(charges, minlength=256) / charges.size
    p = p[p > 0]
    charge_bits = float(-(p * np.log2(p)).sum()) * charges.size / len(events)
    return (pos_bits + charge_bits) / 8


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=200)
    args = ap.parse_args()
    events = load_model("synthetic").events([(7, i) for i in range(args.events)])
    hits = np.mean([e.n_hits for e in events])
    bound = entropy_bound_bytes(events)
    print(
        f"{args.events} synthetic events, {hits:.0f} hits/event, {N_SENSORS} sensors; "
        f"independent-pixel bound {bound / 1e3:.1f} kB/event; dense {DENSE_EVENT_BYTES / 1e6:.2f} MB/event\n"
    )
    print("| encoding | kB/event | vs bound | ratio vs dense | encode ms/event | decode ms/event |")
    print("|---|---|---|---|---|---|")
    results = []
    for cand in candidates():
        n = args.events if not cand.name.startswith("dense") else min(args.events, 20)
        t0 = time.perf_counter()
        enc = [cand.encode(ev) for ev in events[:n]]
        t_enc = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        dec = [cand.decode(chunks) for chunks in enc]
        t_dec = (time.perf_counter() - t0) / n
        assert all(a == b for a, b in zip(dec, events[:n], strict=True)), (
            f"{cand.name}: round trip failed"
        )
        size = sum(len(c) for chunks in enc for c in chunks) / n
        results.append((cand.name, size))
        print(
            f"| {cand.name} | {size / 1e3:.1f} | {size / bound:.3f} | {DENSE_EVENT_BYTES / size:.0f}x | "
            f"{t_enc * 1e3:.2f} | {t_dec * 1e3:.2f} |"
        )
    best = min(results, key=lambda r: r[1])
    print(f"\nsmallest: {best[0]} at {best[1] / 1e3:.1f} kB/event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
