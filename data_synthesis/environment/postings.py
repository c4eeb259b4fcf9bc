"""The BM25 index's postings read with pread, and exact top-k search over them.

bm25s saves its index as CSC arrays (`indptr`, `indices` = passage ids sorted within each term,
`data` = the term's score in that passage). Searching them through bm25s's memory map made a
search task's RSS grow with the corpus: every page a search touches stays mapped, and each
fault maps up to 16 neighbouring pages. Here nothing is mapped:
- `read(term)` reads a term's whole postings (the short lists a query sums);
- `lookup(term, passages)` gives the term's scores for some passages. A long list is not read
  whole: a fence (every BLOCK-th passage id, built on the term's first look-up and kept, within
  FENCE_LIMIT ids in all) says which blocks can hold the passages, and only those are read;
- `top_k(terms, k)` is the search itself (MaxScore, see there), with each term's best score
  (`best`, from the index's `term_max.npy`) as its bound.
Only the fences and, for the terms in use, their places (`span`, read from `indptr`) and best
scores are held in memory, so an index of many shards costs a search task little per shard (a
1 TB corpus is 128 shards of 8 GiB, each with millions of terms).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_synthesis.engine.io import NpyArray
from data_synthesis.engine.lookup import SizedCache, every

BLOCK = 128  # postings per block read by a look-up
FENCE_LIMIT = 1 << 22  # fence ids kept in all (16 MiB), least recently used dropped first
TERMS_KEPT = 1 << 12  # terms whose place in the postings and best score are kept, the most recent
RANGE_POSTINGS = 1 << 19  # a query's postings per range of passages searched at a time
MARGIN = 1 + 1e-6  # bounds within a range are float64 sums; ranks compare float32 scores
UP = 1 + 1e-12  # a float64 sum's rounding, before comparing in the index's dtype


class Postings:
    """The postings of a bm25s index directory (`<index>/bm25`) over `passages` passages, and
    each term's best score in them (`bounds`: the index's `term_max.npy`)."""

    def __init__(self, directory: Path, passages: int, bounds: Path):
        self.passages = passages
        self.indptr = NpyArray(directory / "indptr.csc.index.npy")
        self.ids = NpyArray(directory / "indices.csc.index.npy")
        self.scores = NpyArray(directory / "data.csc.index.npy")
        self.bounds = NpyArray(bounds)
        self._fences = SizedCache(FENCE_LIMIT, len)
        self._terms = SizedCache(TERMS_KEPT, lambda term: 1)

    def _term(self, term: int) -> tuple[int, int, float]:
        """The term's postings' start and stop in the postings files, and its best score."""
        return self._terms.get(term, lambda: self._read_term(term))

    def _read_term(self, term: int) -> tuple[int, int, float]:
        start, stop = self.indptr.read(term, term + 2).tolist()
        return start, stop, float(self.bounds.read(term, term + 1)[0])

    def span(self, term: int) -> tuple[int, int]:
        """Where the term's postings start and stop in the postings files."""
        return self._term(term)[:2]

    def best(self, term: int) -> float:
        """The term's best score in any passage (MaxScore's bound)."""
        return self._term(term)[2]

    def read(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """The term's passages (ascending) and its score in each."""
        start, stop = self.span(term)
        return self.ids.read(start, stop), self.scores.read(start, stop)

    def top_k(
        self, terms: list[int], k: int, floor: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best passages for a query (its term ids) and their scores (the index's dtype), best first, ties lowest passage first; passages
        without any of the terms are never returned. `floor`: the k-th best score of passages
        that rank before these on ties (an earlier shard's), so passages scoring at most it are
        pruned too.

        Exact top-k by MaxScore. Within a range of passages, the terms' postings are summed
        rarest first; once what the remaining terms could add at most (their best scores)
        cannot lift a passage outside the summed ones into the top k, the remaining terms are
        only looked up for the candidates, dropping before each look-up those that can no
        longer get in. When all the terms' best scores together cannot beat `floor`, no
        posting is read. The passages are searched in as many ranges (ascending) as it takes to
        hold the query's postings to RANGE_POSTINGS per range - usually one - so a search's
        memory stays bounded when its terms are common. A passage of a later range that can
        at best tie with the k best of the earlier ones ranks after them and is dropped."""
        known = [self._term(term) for term in terms]  # (start, stop, best score) of each
        lengths = [stop - start for start, stop, _ in known]
        order = sorted(range(len(terms)), key=lengths.__getitem__)
        terms = [terms[i] for i in order]
        bounds = np.cumsum([known[i][2] for i in order][::-1])[::-1].tolist() + [0.0]
        best = _Best(k, self.scores.dtype, floor)
        if best.shuts_out(bounds[0]):  # no passage here can beat an earlier shard's k-th best
            return best.passages, best.scores.astype(best.dtype)
        ends: dict[int, tuple[int, int]] = {}  # term's place in `terms` -> (range end, index)
        ranges = -(-sum(lengths) // RANGE_POSTINGS)
        size = max(-(-self.passages // max(ranges, 1)), 1)
        for lo in range(0, self.passages, size):
            hi = lo + size
            unique, totals = np.zeros(0, dtype=self.ids.dtype), np.zeros(0)
            for cut in range(len(terms)):
                unique, totals = _merge(unique, totals, *self._slice(terms, cut, lo, hi, ends))
                rest = bounds[cut + 1]
                if rest and (best.shuts_out(rest) or _kth(totals, k) > rest * MARGIN):
                    for later in range(cut + 1, len(terms)):
                        keep = _may_enter(totals, bounds[later], k, best)
                        unique, totals = unique[keep], totals[keep]
                        if not len(unique):
                            break
                        totals += self.lookup(terms[later], unique)
                    break
            best.add(unique, totals)
        return best.passages, best.scores.astype(best.dtype)

    def _slice(self, terms, place: int, lo: int, hi: int, ends: dict) -> tuple:
        """The postings of terms[place] with passages in [lo, hi)."""
        term = terms[place]
        end_of_last = ends.get(place)
        if lo == 0:
            begin = self.span(term)[0]
        elif end_of_last and end_of_last[0] == lo:
            begin = end_of_last[1]
        else:
            begin = self.position(term, lo)
        end = self.span(term)[1] if hi >= self.passages else self.position(term, hi)
        ends[place] = (hi, end)
        return self.ids.read(begin, end), self.scores.read(begin, end)

    def lookup(self, term: int, passages: np.ndarray) -> np.ndarray:
        """The term's score in each of `passages` (ascending, unique); 0 where it is absent.
        Only the blocks that can hold the passages are read (their whole span at once when
        they cover most of it)."""
        out = np.zeros(len(passages), dtype=np.float64)
        start, stop = self.span(term)
        if start == stop or not len(passages):
            return out
        if stop - start <= 4 * BLOCK or len(passages) * BLOCK * 4 >= stop - start:
            _add_matches(out, passages, *self.read(term))  # most of the list is needed anyway
            return out
        block_of = self._fence(term, start, stop).searchsorted(passages, "right") - 1
        blocks = np.unique(block_of[block_of >= 0])
        if not len(blocks):
            return out
        if len(blocks) * 4 >= int(blocks[-1] - blocks[0]) + 1:  # dense: one read of the span
            runs = [(blocks[0], blocks[-1])]
        else:
            breaks = np.flatnonzero(np.diff(blocks) != 1)
            runs = zip(blocks[np.r_[0, breaks + 1]], blocks[np.r_[breaks, len(blocks) - 1]])
        spans = [
            (start + int(run_first) * BLOCK, min(start + (int(run_last) + 1) * BLOCK, stop))
            for run_first, run_last in runs
        ]
        ids = np.concatenate([self.ids.read(first, last) for first, last in spans])
        scores = np.concatenate([self.scores.read(first, last) for first, last in spans])
        _add_matches(out, passages, ids, scores)  # the runs' ids, ascending: one search
        return out

    def position(self, term: int, passage: int) -> int:
        """The index (in the postings file) of the term's first posting at or after `passage`."""
        start, stop = self.span(term)
        block = int(self._fence(term, start, stop).searchsorted(passage, "left")) - 1
        if block < 0:
            return start
        first = start + block * BLOCK
        ids = self.ids.read(first, min(first + BLOCK, stop))
        return first + int(ids.searchsorted(passage, "left"))

    def _fence(self, term: int, start: int, stop: int) -> np.ndarray:
        return self._fences.get(term, lambda: every(self.ids.read, start, stop, BLOCK))


def _add_matches(out: np.ndarray, passages: np.ndarray, ids: np.ndarray, scores: np.ndarray):
    """out[i] += the score of passages[i] in (ids, scores), where ids holds it."""
    if not len(ids):
        return
    at = ids.searchsorted(passages).clip(max=len(ids) - 1)
    hit = ids[at] == passages
    out[hit] += scores[at[hit]]


class _Best:
    """The k best passages of the ranges searched so far (full scores, float64 and ranked
    by the index's dtype, then passage)."""

    def __init__(self, k: int, dtype, outside: float | None = None):
        self.k, self.dtype = k, dtype
        self.passages, self.scores = np.zeros(0, dtype=np.int64), np.zeros(0)
        self.outside = None if outside is None else np.asarray(outside, dtype=dtype)

    def floor(self):
        """The score (index dtype) a later passage must beat to get in, if any yet."""
        own = self.scores[-1].astype(self.dtype) if len(self.scores) == self.k else None
        known = [f for f in (own, self.outside) if f is not None]
        return max(known) if known else None

    def shuts_out(self, bound: float) -> bool:
        """Whether a later passage scoring at most `bound` cannot get in (it would at best tie
        with the k-th, and rank after it)."""
        floor = self.floor()
        return floor is not None and np.asarray(bound * UP, dtype=self.dtype) <= floor

    def add(self, passages: np.ndarray, scores: np.ndarray) -> None:
        passages = np.concatenate([self.passages, passages])
        scores = np.concatenate([self.scores, scores])
        ranked = scores.astype(self.dtype)
        chosen = np.arange(len(scores))
        if len(scores) > self.k:  # all above the k-th score, then the lowest tied passages
            kth = _kth(ranked, self.k)
            chosen = np.concatenate([chosen[ranked > kth], chosen[ranked == kth]])[: self.k]
        chosen = chosen[np.lexsort((passages[chosen], -ranked[chosen]))]
        self.passages, self.scores = passages[chosen], scores[chosen]


def _may_enter(totals: np.ndarray, bound: float, k: int, best: _Best) -> np.ndarray:
    """Which candidates (partial sums `totals`, at most `bound` still to add) can still
    reach the top k."""
    reach = totals + bound
    keep = reach >= _kth(totals, k) / MARGIN
    floor = best.floor()
    if floor is not None:
        keep &= (reach * UP).astype(best.dtype) > floor
    return keep


def _merge(unique, totals, ids, scores) -> tuple[np.ndarray, np.ndarray]:
    """Add one term's postings (ids ascending) to the summed (unique ascending, totals)."""
    if not len(unique):  # the rarest term, or nothing summed yet: its postings as they are
        return ids, scores.astype(np.float64)
    passages = np.concatenate([unique, ids])
    weights = np.concatenate([totals, scores.astype(np.float64)])
    order = np.argsort(passages, kind="stable")  # two sorted runs: a linear merge
    passages, weights = passages[order], weights[order]
    starts = np.flatnonzero(np.r_[True, passages[1:] != passages[:-1]])
    return passages[starts], np.add.reduceat(weights, starts) if len(starts) else weights


def _kth(totals: np.ndarray, k: int) -> float:
    """The k-th largest of `totals` (-inf when there are fewer)."""
    if len(totals) < k:
        return -np.inf
    return float(np.partition(totals, len(totals) - k)[len(totals) - k])
