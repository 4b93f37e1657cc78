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

Buffers are placed one at a time at the 16-byte aligned offset, compatible with every buffer already
placed, that grows the arena least (offsets may go below zero while placing: a chain of operators
that each write just below their input then fits); several placement orders and tie-breaks are
tried (largest first, like TFLM's greedy planner, by first use, by last use), then a deterministic
local search over the best order, and the smallest arena wins.
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


def _place(order: list[Buffer], ov: dict, prefer_high: bool = False) -> int:
    """Place `order` one buffer at a time; offsets may go negative (everything is shifted up at
    the end). Each buffer takes, among the offsets next to or overlapping (Overlap) the buffers it
    coexists with, the valid one that grows the arena's span least; ties go to the lowest offset
    (or the highest with `prefer_high`). Returns the span; offsets end up >= 0."""
    placed: list[Buffer] = []
    lo_all, hi_all = 0, 0
    for i, b in enumerate(order):
        live = [p for p in placed if _live_together(p, b)]
        size = align_up(b.size)
        cands = {0} if not placed else {align_down(lo_all), align_up(hi_all - size) if hi_all - size > lo_all else lo_all}
        for p in live:
            cands.add(align_up(p.offset + p.size))
            cands.add(align_down(p.offset - size))
            lag = ov.get((b.name, p.name))
            if lag is not None:
                cands.add(align_down(p.offset - lag))
            lag = ov.get((p.name, b.name))
            if lag is not None:
                cands.add(align_up(p.offset + lag))
        best = None
        for c in sorted(cands, reverse=prefer_high):
            if all(_compatible(b, c, p, ov) for p in live):
                span = max(hi_all, c + b.size) - min(lo_all, c) if placed else b.size
                if best is None or span < best[0]:
                    best = (span, c)
        if best is None:  # pragma: no cover - above every live buffer is always valid
            raise AssertionError(b)
        b.offset = best[1]
        lo_all = min(lo_all, b.offset) if placed else b.offset
        hi_all = max(hi_all, b.offset + b.size) if placed else b.offset + b.size
        placed.append(b)
    base = align_down(min((b.offset for b in order), default=0))
    for b in order:
        b.offset -= base
    return align_up(max((b.offset + b.size for b in order), default=0))


def _orders(buffers: list[Buffer]) -> list[list[Buffer]]:
    return [
        sorted(buffers, key=lambda b: (-align_up(b.size), b.first, b.name)),
        sorted(buffers, key=lambda b: (b.first, -b.size, b.name)),
        sorted(buffers, key=lambda b: (-(b.size * (b.last - b.first + 1)), b.first, b.name)),
        sorted(buffers, key=lambda b: (-b.last, -b.size, b.name)),
    ]


def plan_memory(buffers: list[Buffer], overlaps: list[Overlap] | tuple = (), effort: int = 200) -> int:
    """Assign `offset` to every buffer in place; return the arena size in bytes (16-aligned).

    Several placement orders and tie-breaks are tried, then `effort` deterministic random swaps
    of the best order (kept when the arena does not grow); the smallest arena wins."""
    import random

    for b in buffers:
        if b.first > b.last:
            raise ValueError(f"buffer {b.name}: first use {b.first} after last use {b.last}")
    names = {b.name for b in buffers}
    if len(names) != len(buffers):
        raise ValueError("buffer names must be unique")
    ov = {(o.out, o.inp): int(o.lag) for o in overlaps if o.out in names and o.inp in names}
    best = None

    def attempt(order, high):
        nonlocal best
        total = _place(order, ov, high)
        if best is None or total < best[0]:
            best = (total, {b.name: b.offset for b in buffers}, list(order), high)
        return total

    for order in _orders(buffers):
        for high in (False, True):
            attempt(order, high)
    if len(buffers) > 2 and effort > 0:
        rng = random.Random(len(buffers) * 7919 + sum(b.size for b in buffers))
        order, high = list(best[2]), best[3]
        cur = best[0]
        for _ in range(effort):
            i, j = rng.randrange(len(order)), rng.randrange(len(order))
            if i == j:
                continue
            order[i], order[j] = order[j], order[i]
            t = attempt(order, high)
            if t <= cur:
                cur = t
            else:
                order[i], order[j] = order[j], order[i]
    for b in buffers:
        b.offset = best[1][b.name]
    return best[0]


def check_plan(buffers: list[Buffer], overlaps: list[Overlap] | tuple = ()) -> None:
    """Raise AssertionError if two buffers with intersecting lifetimes overlap in memory where no
    `Overlap` allows it."""
    ov = {(o.out, o.inp): int(o.lag) for o in overlaps}
    for i, a in enumerate(buffers):
        assert a.offset >= 0 and a.offset % ALIGN == 0, a
        for b in buffers[i + 1:]:
            assert _compatible(a, a.offset, b, ov), (a, b)
