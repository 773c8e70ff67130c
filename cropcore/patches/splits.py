"""Splits by place: patches are grouped so that no two neighbours, and no two patches of one tile that may
touch, fall on both sides of a split.

BigEarthNet names encode the Sentinel-2 product and the patch position in its tile:
``S2A_MSIL2A_20170613T101031_87_48`` (v1: datatake start, column 87 and row 48 of 120 x 120 px patches) and
``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_37_88`` (v2: the same plus relative orbit and tile). A datatake
(satellite, date, start time to the minute; v1 names sometimes drop a leading zero or differ by a second)
covers many tiles, and a v1 name does not say which, so the coarse group is the **datatake**: every tile it
covers is one group. A datatake with more than ``max_group`` patches is split into **spatial clusters**:
patches of one tile whose positions are within ``gap`` patches of each other (in either axis order, since
v1 and v2 order them differently; a v1 patch of that datatake may lie in any of its tiles) stay together.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from cropcore.errors import DatasetFormatError

_NAME = re.compile(r"^(S2[AB])_MSI(?:L2A|L1C)_(\d{8})T(\d{5,6})(?:_N\d+_R(\d{3})_T(\w{5}))?_(\d+)_(\d+)$")


@dataclass(frozen=True)
class PatchName:
    """What a BigEarthNet patch name says: its datatake, tile (v2 only) and position (two indices)."""

    datatake: str
    tile: str | None
    position: tuple[int, int]


def parse_name(name: str) -> PatchName:
    """Parse a BigEarthNet v1 or v2 patch name; other names raise :class:`DatasetFormatError`."""
    match = _NAME.match(str(name))
    if match is None:
        raise DatasetFormatError(f"{name!r} is not a BigEarthNet patch name (S2A_MSIL2A_<date>T<time>[_N.._R.."
                                 "_T<tile>]_<i>_<j>); group such patches by place yourself")
    sat, date, time, _orbit, tile, i, j = match.groups()
    return PatchName(f"{sat}_{date}T{time.zfill(6)[:4]}", tile, (int(i), int(j)))


def _near(a: PatchName, b: PatchName, gap: int) -> bool:
    """Whether two patches of one datatake may lie within ``gap`` patches of each other."""
    if a.tile is not None and b.tile is not None and a.tile != b.tile:
        return False
    pairs = [(a.position, b.position)]
    if (a.tile is None) != (b.tile is None):  # v1 vs v2 naming: the axis order may differ
        pairs.append((a.position, b.position[::-1]))
    return any(max(abs(p[0] - q[0]), abs(p[1] - q[1])) <= gap for p, q in pairs)


def _clusters(patches: list[PatchName], gap: int) -> list[int]:
    """Single-linkage cluster label per patch (union-find over pairs that are :func:`_near`)."""
    parent = list(range(len(patches)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a in range(len(patches)):
        for b in range(a + 1, len(patches)):
            if _near(patches[a], patches[b], gap):
                parent[root(a)] = root(b)
    return [root(k) for k in range(len(patches))]


def place_groups(names: list[str] | np.ndarray, *, max_group: int = 12, gap: int = 2) -> np.ndarray:
    """Group id (0 ... G-1) per patch: its datatake, or its spatial cluster within a datatake with more than
    ``max_group`` patches (single linkage: patches within ``gap`` positions are linked)."""
    parsed = [parse_name(n) for n in names]
    by_take: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(parsed):
        by_take[p.datatake].append(i)
    groups = np.empty(len(parsed), np.int64)
    next_id = 0
    for take in sorted(by_take):
        members = by_take[take]
        label = _clusters([parsed[m] for m in members], gap) if len(members) > max_group else [0] * len(members)
        ids = {r: next_id + n for n, r in enumerate(sorted(set(label)))}
        for member, r in zip(members, label, strict=True):
            groups[member] = ids[r]
        next_id += len(ids)
    return groups


def group_folds(groups: np.ndarray, k: int, *, strata: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Fold (0 ... k-1) per patch; whole groups go to one fold, largest first, each to the fold with the fewest
    patches (ties: the fewest of the group's majority stratum, then at random with ``seed``)."""
    unique = np.unique(groups)
    if len(unique) < k:
        raise DatasetFormatError(f"{len(unique)} place groups cannot make {k} folds; use k <= {len(unique)}")
    rng = np.random.default_rng(seed)
    order = sorted(rng.permutation(unique), key=lambda g: -int((groups == g).sum()))
    strata = np.zeros(len(groups), np.int64) if strata is None else np.asarray(strata).astype(np.int64)
    sizes = np.zeros(k)
    per_stratum = np.zeros((k, int(strata.max()) + 1))
    fold_of_group = {}
    for g in order:
        members = groups == g
        major = np.bincount(strata[members]).argmax()
        fold = min(range(k), key=lambda f: (sizes[f], per_stratum[f, major]))
        fold_of_group[g] = fold
        sizes[fold] += members.sum()
        per_stratum[fold] += np.bincount(strata[members], minlength=per_stratum.shape[1])
    return np.array([fold_of_group[g] for g in groups])


def fold_split(folds: np.ndarray, test_fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, val, test): ``test_fold`` is the test fold, the next one (cyclically) validation."""
    k = int(folds.max()) + 1
    val_fold = (test_fold + 1) % k
    test, val = np.flatnonzero(folds == test_fold), np.flatnonzero(folds == val_fold)
    train = np.flatnonzero((folds != test_fold) & (folds != val_fold))
    return train, val, test
