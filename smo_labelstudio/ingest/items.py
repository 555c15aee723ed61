"""From source rows to labeling items: map columns by the spec, validate, hash, de-duplicate.

Every row ends up in exactly one of three places, each with its source row number: `items` (to
import), `duplicates` (same item as an earlier row or one the project holds) or `quarantine` (with
one reason). Pure functions over lists and frames; nothing here talks to Label Studio.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict
from urllib.parse import urlsplit

import langcodes
import pandas as pd

from smo_labelstudio.core.keys import item_key
from smo_labelstudio.core.spec import Columns
from smo_labelstudio.ingest import language as langdetect
from smo_labelstudio.ingest.sources import Row, SourceError

MAX_TEXT_CHARS = 20_000  # the backend's limit too (textmodel.MAX_TEXT_CHARS); a test keeps them equal
ITEM_COLUMNS = [
    "row",
    "external_id",
    "item_id",
    "content_hash",
    "text",
    "image",
    "language",
    "source",
    "is_gold",
    "language_detected",
    "language_confidence",
]
QUARANTINE_COLUMNS = ["file", "row", "lines", "external_id", "reason", "raw"]
DUPLICATE_COLUMNS = ["row", "external_id", "item_id", "duplicate_of"]
IMAGE_SCHEMES = {"http", "https", "s3", "gs", "azure-blob"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _Mapped(TypedDict):
    """A row mapped by the spec, valid, with its language and content hash (an `ITEM_COLUMNS` row once
    it has its item id)."""

    row: int
    external_id: str
    text: str | None
    image: str | None
    language: str | None
    source: str | None
    language_detected: bool
    language_confidence: float | None
    content_hash: str
    item_id: NotRequired[str]
    is_gold: NotRequired[bool]


class _Quarantined(TypedDict):
    """A `QUARANTINE_COLUMNS` row: a source record refused, with its physical lines (`7` or `7-9`) and why."""

    file: str
    row: int
    lines: str
    external_id: str | None
    reason: str | None
    raw: str


@dataclass
class Prepared:
    """The three destinations of a file's rows."""

    items: pd.DataFrame
    duplicates: pd.DataFrame
    quarantine: pd.DataFrame
    rows_read: int = 0
    notes: list[str] = field(default_factory=list)
    accounted: bool = True  # the source's lines all in records (`Source.accounted`), set by the launch


def normalize(text: str | None) -> str:
    """Content as compared for duplicates: NFKC, case-folded, whitespace collapsed (ASCII text is its own
    NFKC form and case-folds as it lowercases: the fast path most rows take)."""
    text = text or ""
    if text.isascii():
        return " ".join(text.lower().split())
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def content_hash(text: str | None, image: str | None) -> str:
    return hashlib.sha256(f"{normalize(text)}\x1f{(image or '').strip()}".encode()).hexdigest()[:32]


def item_id(external_id: str, key: bytes, kind: str = "item") -> str:
    """A stable, opaque task id: HMAC-SHA256 under the deployment's key (`core.keys.item_key`) of the kind
    and the source id, so the same row always gets the same id, and gold and work items get ids of one
    construction and format that nobody without the key can recompute from the code, the text or the
    source id (annotators see the id; the kind and source id stay in our workspace)."""
    return "i" + _keyed(key)(kind, external_id)[:20]  # = keyed_hex(key, kind, external_id)[:20]


def text_id(digest: str, key: bytes) -> str:
    """The external id of a row without one: keyed, like `item_id`, so it cannot be recomputed from the text."""
    return "h:" + _keyed(key)("text", digest)[:32]  # = keyed_hex(key, "text", digest)[:32]


def legacy_item_id(external_id: str, kind: str) -> str:
    """The unkeyed id launches gave before ids were keyed (a blake2b of kind and source id, `sha:<content
    hash>` for a row without one): looked up only, so re-running an old workspace never imports an item twice."""
    return "i" + hashlib.blake2b(f"{kind}\x00{external_id}".encode(), digest_size=10).hexdigest()


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> Callable[[str, str], str]:
    """`keyed_hex(key, kind, value)` for one key, faster per row: the key's HMAC state is built once and copied."""
    base = hmac.new(key, digestmod=hashlib.sha256)

    def keyed(kind: str, value: str) -> str:
        h = base.copy()
        h.update(f"{kind}\x00{value}".encode())
        return h.hexdigest()

    return keyed


def _text(value) -> str | None:
    if type(value) is str:  # what CSV and JSON cells mostly are
        return value
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    return str(value)


@functools.lru_cache(maxsize=4096)
def _valid_language(code: str) -> bool:
    return langcodes.tag_is_valid(code)


def _problem(fields: dict, columns: Columns, needs_text: bool, needs_image: bool) -> str | None:
    """Why a mapped row cannot be labeled, or None."""
    text, image, lang = fields["text"], fields["image"], fields["language"]
    if needs_text and not (text or "").strip():
        return f"missing or empty text (column {columns.text!r})"
    if needs_image and not (image or "").strip():
        return f"missing or empty image URL (column {columns.image!r})"
    if text is not None:
        if len(text) > MAX_TEXT_CHARS:
            return f"text of {len(text):,} characters is over the limit of {MAX_TEXT_CHARS:,}"
        if "\ufffd" in text or _CONTROL.search(text):
            return "undecodable text (replacement or control characters)"
    if image is not None and urlsplit(image.strip()).scheme not in IMAGE_SCHEMES:
        return f"image {image[:80]!r} is not an http(s), s3, gs or azure-blob URL"
    if lang is not None and not _valid_language(lang):
        return f"unknown language code {lang!r} (expected an ISO 639 / BCP 47 code such as en, ar, pt-BR)"
    return None


def prepare(
    rows: Iterable[Row],
    columns: Columns,
    needs_text: bool,
    needs_image: bool,
    file: str,
    kind: str = "item",
    known: dict[str, str] | None = None,
    key: bytes | None = None,
    header: list[str] | None = None,
) -> Prepared:
    """Map, validate and de-duplicate source rows. `known` maps content hashes and item ids the
    project already holds to their item ids, so re-sent rows count as duplicates, not new items (an item
    imported under its old, unkeyed id too). Ids are keyed with `key`, by default the deployment's. `header`:
    the source's columns when known before any row (a query's), so a missing one is refused even with no rows."""
    known = known or {}
    key = key if key is not None else item_key()
    legacy: dict[int, str] = {}  # the source id of each row's unkeyed id: looked up only when the project holds items
    for needed, what in ((needs_text and not columns.text, "text"), (needs_image and not columns.image, "an image")):
        if needed:
            raise SourceError(f"the spec's label config shows {what} but `columns:` maps no column for it")
    # needed columns no row has shown yet (checked as rows stream by: one pass over the source)
    unseen = {c for needed, c in ((needs_text, columns.text), (needs_image, columns.image)) if needed and c}
    if header is not None and (missing := sorted(unseen - set(header))):
        raise SourceError(
            f"{file}: no column {missing[0]!r} in any row; map the right one under `columns:` "
            f"in the spec (the query gives: {', '.join(sorted(header)[:12])})"
        )
    first_fields: dict | None = None
    quarantined: list[_Quarantined] = []
    mapped: list[_Mapped] = []
    spans: dict[int, str] = {}  # rows of more than one physical line: their lines
    seen = 0
    id_col, text_col, image_col, language_col, source_col = (
        columns.id,
        columns.text,
        columns.image,
        columns.language,
        columns.source,
    )
    for row in rows:
        seen += 1
        if row.fields is None:
            quarantined.append(
                {
                    "file": file,
                    "row": row.number,
                    "lines": row.lines,
                    "external_id": None,
                    "reason": row.problem,
                    "raw": row.raw[:500],
                }
            )
            continue
        values = row.fields
        if first_fields is None:
            first_fields = values
        if unseen:
            unseen = {c for c in unseen if c not in values}
        if row.last > row.number:
            spans[row.number] = row.lines
        external_id = _text(values.get(id_col)) if id_col else None
        text = _text(values.get(text_col)) if text_col else None
        image = _text(values.get(image_col)) if image_col else None
        language = _text(values.get(language_col)) if language_col else None
        source = _text(values.get(source_col)) if source_col else None
        if language is not None and langdetect.missing(language):
            language = None  # an empty cell is no language (detected below), not an unknown code
        fields = {"text": text, "image": image, "language": language}
        problem = _problem(fields, columns, needs_text, needs_image)
        if problem:
            quarantined.append(
                {
                    "file": file,
                    "row": row.number,
                    "lines": row.lines,
                    "external_id": external_id,
                    "reason": problem,
                    "raw": row.raw[:500],
                }
            )
            continue
        # A row without a language gets a detected one (flagged, with its confidence); a given one is kept.
        detected, confidence = False, None
        if language is None and text:
            code, score = langdetect.detect(text)
            if code is not None:
                language, detected, confidence = code, True, score
        digest = content_hash(text, image)
        if known:
            legacy[row.number] = external_id or f"sha:{digest}"
        mapped.append(
            {
                "row": row.number,
                "external_id": external_id or text_id(digest, key),
                "text": text,
                "image": image,
                "language": language,
                "source": source,
                "language_detected": detected,
                "language_confidence": confidence,
                "content_hash": digest,
            }
        )

    if first_fields is not None and unseen:
        column = min(unseen)
        raise SourceError(
            f"{file}: no column {column!r} in any row; map the right one under `columns:` "
            f"in the spec (the file has: {', '.join(sorted(first_fields)[:12])})"
        )

    # An external id with two different contents: we cannot know which is right, so neither goes in.
    by_id: dict[str, set[str]] = {}
    for f in mapped:
        by_id.setdefault(f["external_id"], set()).add(f["content_hash"])
    conflicted = {eid for eid, hashes in by_id.items() if len(hashes) > 1}
    rows_of: dict[str, list[int]] = {eid: [] for eid in conflicted}
    for f in mapped:
        if f["external_id"] in rows_of:
            rows_of[f["external_id"]].append(f["row"])

    items: list[_Mapped] = []
    duplicates: list[dict[str, object]] = []
    first_by_hash: dict[str, int] = {}
    first_by_id: dict[str, int] = {}
    for f in mapped:
        eid = f["external_id"]
        if eid in conflicted:
            others = ", ".join(str(r) for r in rows_of[eid] if r != f["row"])
            quarantined.append(
                {
                    "file": file,
                    "row": f["row"],
                    "lines": spans.get(f["row"], str(f["row"])),
                    "external_id": eid,
                    "raw": "",
                    "reason": f"external id {eid!r} also appears with different content (row {others})",
                }
            )
            continue
        f["item_id"] = item_id(eid, key, kind)
        f["is_gold"] = kind == "gold"
        earlier = first_by_id.get(eid) or first_by_hash.get(f["content_hash"])
        if known and f["item_id"] not in known and (old := legacy_item_id(legacy[f["row"]], kind)) in known:
            f["item_id"] = old  # imported before ids were keyed: it keeps the id the project holds
        held = known.get(f["item_id"]) or known.get(f["content_hash"])
        if earlier is not None:
            duplicates.append(
                {"row": f["row"], "external_id": eid, "item_id": f["item_id"], "duplicate_of": f"row {earlier}"}
            )
        elif held is not None:
            duplicates.append(
                {"row": f["row"], "external_id": eid, "item_id": f["item_id"], "duplicate_of": f"project item {held}"}
            )
        else:
            items.append(f)
        first_by_id.setdefault(eid, f["row"])
        first_by_hash.setdefault(f["content_hash"], f["row"])
    frame = pd.DataFrame(items, columns=ITEM_COLUMNS)
    frame["language_detected"] = frame["language_detected"].astype(bool)
    frame["language_confidence"] = frame["language_confidence"].astype("float64")
    return Prepared(
        items=frame,
        duplicates=pd.DataFrame(duplicates, columns=DUPLICATE_COLUMNS),
        quarantine=pd.DataFrame(sorted(quarantined, key=lambda q: q["row"]), columns=QUARANTINE_COLUMNS),
        rows_read=seen,
    )


def stratified_sample(items: pd.DataFrame, size: int | float, by: list[str], seed: int = 0) -> pd.DataFrame:
    """A sample keeping each stratum's share (`size` a count or a fraction), at least one per stratum
    when it fits; the same seed gives the same sample."""
    if items.empty:
        return items
    n = int(round(size * len(items))) if isinstance(size, float) and size <= 1 else int(size)
    if n >= len(items):
        return items
    keys = [items[c].fillna("") for c in by if c in items]
    groups = items.groupby(keys, sort=True, dropna=False) if keys else [((), items)]
    shares = {key: len(g) / len(items) * n for key, g in groups}
    take = {key: max(1, int(share)) for key, share in shares.items()}
    rest = n - sum(take.values())
    for key in sorted(shares, key=lambda k: shares[k] - int(shares[k]), reverse=True)[: max(rest, 0)]:
        take[key] += 1
    parts = [g.sample(n=min(len(g), take[key]), random_state=seed) for key, g in groups]
    return pd.concat(parts).sort_values("row").head(n) if parts else items.head(0)
