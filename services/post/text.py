"""Text rules for posts and comments: Unicode normalization, hashtags, mentions."""

from __future__ import annotations

import re
import unicodedata

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
