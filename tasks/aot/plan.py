"""Offline memory plan for the AOT arena: greedy by size, first fit by offset.

Like TFLM's GreedyMemoryPlanner: buffers are placed largest first at the lowest 16-byte aligned
offset that does not overlap any already placed buffer whose lifetime intersects. A lifetime is
the inclusive range of operator indices [first, last] during which the buffer must hold its data.
Reshape-like aliases are merged by the caller into one buffer before planning.
"""
from __future__ import annotations

from dataclasses import dataclass

ALIGN = 16


def align_up(n: int, a: int = ALIGN) -> int:
    return (int(n) + a - 1) // a * a


@dataclass
class Buffer:
    name: str
    size: int
    first: int
    last: int
    offset: int = -1


def plan_memory(buffers: list[Buffer]) -> int:
    """Assign `offset` to every buffer in place; return the arena size in bytes (16-aligned)."""
    for b in buffers:
        if b.first > b.last:
            raise ValueError(f"buffer {b.name}: first use {b.first} after last use {b.last}")
    order = sorted(buffers, key=lambda b: (-align_up(b.size), b.first, b.name))
    placed: list[Buffer] = []
    for b in order:
        size = align_up(b.size)
        live = sorted(
            (p for p in placed if not (p.last < b.first or b.last < p.first)), key=lambda p: p.offset
        )
        offset = 0
        for p in live:
            if offset + size <= p.offset:
                break
            offset = max(offset, align_up(p.offset + p.size))
        b.offset = offset
        placed.append(b)
    return align_up(max((b.offset + b.size for b in buffers), default=0))


def check_plan(buffers: list[Buffer]) -> None:
    """Raise AssertionError if two buffers with intersecting lifetimes overlap in memory."""
    for i, a in enumerate(buffers):
        assert a.offset % ALIGN == 0, a
        for b in buffers[i + 1:]:
            if a.last < b.first or b.last < a.first:
                continue
            assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
