"""Text rules for posts and comments: Unicode normalization, hashtags, mentions."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from services.kit.validation import strip_control_characters

HASHTAG = re.compile(r"(?<![\w#])#(\w{1,100})")
MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{3,30})(?!\w)")
MAX_HASHTAGS = 30
MAX_MENTIONS = 20


def clean(text: str) -> str:
    """NFC-normalized (so length counts what people see as characters, mostly), no controls."""
    return strip_control_characters(unicodedata.normalize("NFC", text)).strip()


def hashtags(text: str) -> list[str]:
    return list(dict.fromkeys(tag.lower() for tag in HASHTAG.findall(text)))[:MAX_HASHTAGS]


def mentioned_handles(text: str) -> list[str]:
    return list(dict.fromkeys(h.lower() for h in MENTION.findall(text)))[:MAX_MENTIONS]


#: http(s) URLs and bare www. links; trailing punctuation is not part of a link.
LINK = re.compile(r"(?<![\w@/])(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)
_LINK_TRAILING = ".,;:!?'\")]}"


@dataclass(frozen=True)
class Span:
    """A facet's place in the text: half-open code point range, and what it is."""

    start: int
    end: int
    kind: str  # "mention" | "link" | "tag"
    value: str  # handle (lower-cased) | URI | tag as written


def spans(text: str) -> list[Span]:
    """Mentions, links and hashtags of the text, in order, never overlapping
    (a '#' or '@' inside a link belongs to the link)."""
    found: list[Span] = []
    for m in LINK.finditer(text):
        raw = m.group(0).rstrip(_LINK_TRAILING)
        if len(raw) <= len("www.") or raw.lower() in ("http://", "https://"):
            continue
        uri = raw if raw.lower().startswith("http") else f"https://{raw}"
        found.append(Span(m.start(), m.start() + len(raw), "link", uri))
    taken = [(s.start, s.end) for s in found]

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    for m in MENTION.finditer(text):
        if free(m.start(), m.end()):
            found.append(Span(m.start(), m.end(), "mention", m.group(1).lower()))
    for m in HASHTAG.finditer(text):
        if free(m.start(), m.end()):
            found.append(Span(m.start(), m.end(), "tag", m.group(1)))
    found.sort(key=lambda s: s.start)
    return found


def byte_offsets(text: str) -> list[int]:
    """UTF-8 byte offset of every code point index (0..len(text) inclusive)."""
    offsets = [0] * (len(text) + 1)
    total = 0
    for i, ch in enumerate(text):
        offsets[i] = total
        total += len(ch.encode("utf-8", "surrogatepass"))
    offsets[len(text)] = total
    return offsets
