"""Near-duplicate groups for export splits: texts that differ by an inserted word, punctuation, digits or
case land in one group, so no near-copy sits in train while its twin is in test.

Two passes. Exact: NFKC, case-folded, letters only (`exact_key`). Fuzzy: character 4-grams of the
letters-and-spaces text, MinHash LSH (datasketch) to find candidate pairs, then the true Jaccard
similarity checked (>= `THRESHOLD`) before two groups merge. Groups are connected components, named
by their smallest exact key, so the result does not depend on row order.

>>> keys = group_keys(["you are worthless", "You are SO worthless!!", "lovely weather today", None],
...                   fallbacks=["a", "b", "c", "d"])
>>> keys[0] == keys[1], keys[0] == keys[2], keys[3].startswith("x:")
(True, False, True)
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence

from datasketch import MinHash, MinHashLSH

THRESHOLD = 0.6  # Jaccard of character 4-gram sets: "you are worthless" / "you are so worthless" is 0.63
NGRAM = 4
NUM_PERM = 128
SEED = 1


def _letters(text: str, keep_spaces: bool) -> str:
    norm = unicodedata.normalize("NFKC", text).casefold()
    out = "".join(ch if unicodedata.category(ch)[0] in ("L", "M") else (" " if keep_spaces else "") for ch in norm)
    return " ".join(out.split()) if keep_spaces else out


def exact_key(text: object, image: object = None, fallback: str = "") -> str:
    """The exact-pass key: a hash of the text's letters (case, digits, punctuation, spaces ignored),
    else of the image reference, else of `fallback` (the task id: a group of its own)."""
    if isinstance(text, str) and text.strip():
        letters = _letters(text, keep_spaces=False)
        if letters:
            return "t:" + hashlib.sha256(letters.encode()).hexdigest()[:16]
    if isinstance(image, str) and image.strip():
        return "i:" + hashlib.sha256(image.strip().encode()).hexdigest()[:16]
    return "x:" + hashlib.sha256(fallback.encode()).hexdigest()[:16]


def shingles(text: str) -> set[bytes]:
    """Character 4-grams of the letters-and-spaces text (a shorter text is its own shingle)."""
    norm = _letters(text, keep_spaces=True)
    if len(norm) <= NGRAM:
        return {norm.encode()} if norm else set()
    return {norm[i : i + NGRAM].encode() for i in range(len(norm) - NGRAM + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def group_keys(
    texts: Sequence[object],
    images: Sequence[object] | None = None,
    fallbacks: Sequence[str] | None = None,
    threshold: float = THRESHOLD,
) -> list[str]:
    """One group key per row: rows whose texts are exact or fuzzy near-duplicates share it."""
    n = len(texts)
    images = images if images is not None else [None] * n
    fallbacks = fallbacks if fallbacks is not None else [str(i) for i in range(n)]
    exact = [exact_key(t, i, f) for t, i, f in zip(texts, images, fallbacks)]
    sets: dict[str, set[bytes]] = {}
    for key, text in zip(exact, texts):
        if key.startswith("t:") and key not in sets:
            sets[key] = shingles(str(text))
    parent = {key: key for key in set(exact)}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    if len(sets) > 1:
        ordered = sorted(sets)
        hashes = MinHash.bulk([sorted(sets[k]) for k in ordered], num_perm=NUM_PERM, seed=SEED)
        lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        for key, mh in zip(ordered, hashes):
            for other in lsh.query(mh):
                if jaccard(sets[key], sets[other]) >= threshold:
                    a, b = find(key), find(other)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
            lsh.insert(key, mh)
    return [find(key) for key in exact]
