"""Offline memory plan for the AOT arena: greedy first fit, with data-flow overlaps.

Every activation tensor (the model's input and output included), and every kernel scratch buffer,
is a `Buffer` with a lifetime: the inclusive range of operator indices [first, last] during which it
must hold its data (the model input starts at -1, the output ends after the last operator).
Reshape-like aliases are merged by the caller into one buffer before planning.

Two buffers whose lifetimes intersect must not share bytes, with one exception: an `Overlap`
(out, inp, lag) says that the operator producing `out` from `inp` (which `inp` does not outlive)
writes its output only over input bytes it has already consumed, as long as
`out.offset <= inp.offset - lag` (tasks/aot/flow.py derives `lag` from the kernel's loop order; a
lag <= 0 allows the output right on top of its input: in place).

Buffers are placed one at a time at the lowest 16-byte aligned offset that is compatible with every
buffer already placed; several placement orders are tried (largest first, like TFLM's greedy
planner, and orders by first use) and the smallest arena wins.
"""
from __future__ import annotations

from dataclasses import dataclass

ALIGN = 16


def align_up(n: int, a: int = ALIGN) -> int:
    return (int(n) + a - 1) // a * a


def align_down(n: int, a: int = ALIGN) -> int:
    return int(n) // a * a


@dataclass
class Buffer:
    name: str
    size: int
    first: int
    last: int
    offset: int = -1


@dataclass(frozen=True)
class Overlap:
    out: str
    inp: str
    lag: int


def _live_together(a: Buffer, b: Buffer) -> bool:
    return not (a.last < b.first or b.last < a.first)


def _compatible(a: Buffer, a_off: int, b: Buffer, ov: dict) -> bool:
    """May `a` at a_off coexist with placed `b`?"""
    if not _live_together(a, b):
        return True
    if a_off + a.size <= b.offset or b.offset + b.size <= a_off or a.size == 0 or b.size == 0:
        return True
    lag = ov.get((a.name, b.name))  # a is the output written over its input b
    if lag is not None and a_off <= b.offset - lag:
        return True
    lag = ov.get((b.name, a.name))  # b is the output written over its input a
    if lag is not None and b.offset <= a_off - lag:
        return True
    return False


def _place(order: list[Buffer], ov: dict) -> int:
    placed: list[Buffer] = []
    for b in order:
        live = [p for p in placed if _live_together(p, b)]
        cands = {0}
        for p in live:
            cands.add(align_up(p.offset + p.size))
            lag = ov.get((b.name, p.name))
            if lag is not None:
                cands.add(align_down(p.offset - lag))
            lag = ov.get((p.name, b.name))
            if lag is not None:
                cands.add(align_up(p.offset + lag))
        for c in sorted(x for x in cands if x >= 0):
            if all(_compatible(b, c, p, ov) for p in live):
                b.offset = c
                break
        else:  # pragma: no cover - the end of every live buffer is always a valid candidate
            raise AssertionError(b)
        placed.append(b)
    return align_up(max((b.offset + b.size for b in order), default=0))


def plan_memory(buffers: list[Buffer], overlaps: list[Overlap] | tuple = ()) -> int:
    """Assign `offset` to every buffer in place; return the arena size in bytes (16-aligned)."""
    for b in buffers:
        if b.first > b.last:
            raise ValueError(f"buffer {b.name}: first use {b.first} after last use {b.last}")
    names = {b.name for b in buffers}
    if len(names) != len(buffers):
        raise ValueError("buffer names must be unique")
    ov = {(o.out, o.inp): int(o.lag) for o in overlaps if o.out in names and o.inp in names}
    orders = [
        sorted(buffers, key=lambda b: (-align_up(b.size), b.first, b.name)),
        sorted(buffers, key=lambda b: (b.first, -b.size, b.name)),
        sorted(buffers, key=lambda b: (-(b.size * (b.last - b.first + 1)), b.first, b.name)),
    ]
    if ov:
        # place each output right after the input it may overlap (chains of in-place operators)
        orders.append(sorted(buffers, key=lambda b: (-b.size, b.first, b.name)))
        orders.append(sorted(buffers, key=lambda b: (b.last, -b.size, b.name), reverse=False))
    best, best_offsets = None, None
    for order in orders:
        total = _place(order, ov)
        if best is None or total < best:
            best, best_offsets = total, {b.name: b.offset for b in buffers}
    for b in buffers:
        b.offset = best_offsets[b.name]
    return best


def check_plan(buffers: list[Buffer], overlaps: list[Overlap] | tuple = ()) -> None:
    """Raise AssertionError if two buffers with intersecting lifetimes overlap in memory where no
    `Overlap` allows it."""
    ov = {(o.out, o.inp): int(o.lag) for o in overlaps}
    for i, a in enumerate(buffers):
        assert a.offset >= 0 and a.offset % ALIGN == 0, a
        for b in buffers[i + 1:]:
            assert _compatible(a, a.offset, b, ov), (a, b)
