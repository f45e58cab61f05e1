"""Stalls: pieces of stall furniture standing together, reported as one `stall`.

The detector names umbrellas, tables, chairs and benches `stall_furniture`; one chair on a
sidewalk is no stall (a city bench is furniture too), but a table under an umbrella, or a table
with chairs, standing together in a sidewalk or shop-front zone is. Pieces stand together when
their boxes, each grown by half its size, touch. A stall keeps its id while it keeps any of its
pieces, so a chair carried off and back does not restart its dwell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Box = tuple[float, float, float, float]

FURNITURE = "stall_furniture"
MIN_PIECES = 2
GROW = 0.5
STALL_ID_BASE = 2_000_000_000
"""Stall ids start here, apart from ByteTrack's and the left objects' ids."""


@dataclass
class Stall:
    stall_id: int
    pieces: frozenset[int]
    """Track ids of the furniture."""
    box: Box


def _grown(box: Box) -> Box:
    dx, dy = GROW * (box[2] - box[0]) / 2, GROW * (box[3] - box[1]) / 2
    return box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy


def _touch(a: Box, b: Box) -> bool:
    a, b = _grown(a), _grown(b)
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def group(
    pieces: Mapping[int, Box], min_pieces: int = MIN_PIECES
) -> list[tuple[frozenset[int], Box]]:
    """Clusters of touching pieces (track id → box) with at least `min_pieces` members, each
    with the union of its boxes."""
    ids = list(pieces)
    parent = {i: i for i in ids}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for n, a in enumerate(ids):
        for b in ids[n + 1 :]:
            if _touch(pieces[a], pieces[b]):
                parent[root(a)] = root(b)
    clusters: dict[int, list[int]] = {}
    for i in ids:
        clusters.setdefault(root(i), []).append(i)
    out = []
    for members in clusters.values():
        if len(members) < min_pieces:
            continue
        boxes = [pieces[i] for i in members]
        union = (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        out.append((frozenset(members), union))
    return sorted(out, key=lambda c: min(c[0]))


class StallGrouper:
    """Stable stall ids over frames."""

    def __init__(self, min_pieces: int = MIN_PIECES, id_base: int = STALL_ID_BASE) -> None:
        self.min_pieces = min_pieces
        self.stalls: dict[int, Stall] = {}
        self._next_id = id_base

    def update(self, pieces: Mapping[int, Box]) -> tuple[list[Stall], list[Stall]]:
        """The furniture standing in watched zones now; returns (current stalls, ended)."""
        current: dict[int, Stall] = {}
        for members, box in group(pieces, self.min_pieces):
            known = next(
                (
                    s
                    for s in self.stalls.values()
                    if s.pieces & members and s.stall_id not in current
                ),
                None,
            )
            if known is None:
                known = Stall(self._next_id, members, box)
                self._next_id += 1
            known.pieces, known.box = members, box
            current[known.stall_id] = known
        ended = [s for i, s in self.stalls.items() if i not in current]
        self.stalls = current
        return list(current.values()), ended
