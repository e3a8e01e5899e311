"""Is a reaction exactly one emoji? (UTS #51 emoji sequences, without a dependency.)

Python's `unicodedata` knows no `Extended_Pictographic`, so the ranges below
are that property from Unicode's emoji-data.txt (15.1). A reaction is one
emoji sequence, which is one extended grapheme cluster:

* a pictograph, optionally with VS16/VS15, a skin tone, or (black flag) a tag
  sequence, and any number of those joined by ZWJ (families, professions);
* a flag: two regional indicators;
* a keycap: 0-9, # or *, optionally VS16, then U+20E3.

Letters, digits alone, spaces, controls and two emoji side by side are not.
"""

from __future__ import annotations

import bisect

#: A reaction longer than this (code points) is refused before parsing; the
#: longest RGI sequences (kiss with two skin tones) have 10.
MAX_CODE_POINTS = 16

_PICTOGRAPHIC_RANGES: tuple[tuple[int, int], ...] = (
    (0x00A9, 0x00A9),
    (0x00AE, 0x00AE),
    (0x203C, 0x203C),
    (0x2049, 0x2049),
    (0x2122, 0x2122),
    (0x2139, 0x2139),
    (0x2194, 0x2199),
    (0x21A9, 0x21AA),
    (0x231A, 0x231B),
    (0x2328, 0x2328),
    (0x2388, 0x2388),
    (0x23CF, 0x23CF),
    (0x23E9, 0x23F3),
    (0x23F8, 0x23FA),
    (0x24C2, 0x24C2),
    (0x25AA, 0x25AB),
    (0x25B6, 0x25B6),
    (0x25C0, 0x25C0),
    (0x25FB, 0x25FE),
    (0x2600, 0x2605),
    (0x2607, 0x2612),
    (0x2614, 0x2685),
    (0x2690, 0x2705),
    (0x2708, 0x2712),
    (0x2714, 0x2714),
    (0x2716, 0x2716),
    (0x271D, 0x271D),
    (0x2721, 0x2721),
    (0x2728, 0x2728),
    (0x2733, 0x2734),
    (0x2744, 0x2744),
    (0x2747, 0x2747),
    (0x274C, 0x274C),
    (0x274E, 0x274E),
    (0x2753, 0x2755),
    (0x2757, 0x2757),
    (0x2763, 0x2767),
    (0x2795, 0x2797),
    (0x27A1, 0x27A1),
    (0x27B0, 0x27B0),
    (0x27BF, 0x27BF),
    (0x2934, 0x2935),
    (0x2B05, 0x2B07),
    (0x2B1B, 0x2B1C),
    (0x2B50, 0x2B50),
    (0x2B55, 0x2B55),
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x3297, 0x3297),
    (0x3299, 0x3299),
    (0x1F000, 0x1F0FF),
    (0x1F10D, 0x1F10F),
    (0x1F12F, 0x1F12F),
    (0x1F16C, 0x1F171),
    (0x1F17E, 0x1F17F),
    (0x1F18E, 0x1F18E),
    (0x1F191, 0x1F19A),
    (0x1F1AD, 0x1F1E5),
    (0x1F201, 0x1F20F),
    (0x1F21A, 0x1F21A),
    (0x1F22F, 0x1F22F),
    (0x1F232, 0x1F23A),
    (0x1F23C, 0x1F23F),
    (0x1F249, 0x1F3FA),
    (0x1F400, 0x1F53D),
    (0x1F546, 0x1F64F),
    (0x1F680, 0x1F6FF),
    (0x1F774, 0x1F77F),
    (0x1F7D5, 0x1F7FF),
    (0x1F80C, 0x1F80F),
    (0x1F848, 0x1F84F),
    (0x1F85A, 0x1F85F),
    (0x1F888, 0x1F88F),
    (0x1F8AE, 0x1F8FF),
    (0x1F90C, 0x1F93A),
    (0x1F93C, 0x1F945),
    (0x1F947, 0x1FAFF),
    (0x1FC00, 0x1FFFD),
)
_STARTS = [low for low, _ in _PICTOGRAPHIC_RANGES]

ZWJ = 0x200D
VS16, VS15 = 0xFE0F, 0xFE0E
KEYCAP = 0x20E3
SKIN_TONES = range(0x1F3FB, 0x1F400)
REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)
TAGS = range(0xE0020, 0xE007F)
CANCEL_TAG = 0xE007F
KEYCAP_BASES = frozenset(map(ord, "0123456789#*"))


def is_pictographic(code_point: int) -> bool:
    """Unicode's Extended_Pictographic property."""
    i = bisect.bisect_right(_STARTS, code_point) - 1
    return i >= 0 and _PICTOGRAPHIC_RANGES[i][0] <= code_point <= _PICTOGRAPHIC_RANGES[i][1]


def _element(cps: list[int], i: int) -> int | None:
    """Parses one pictograph with its modifiers at `i`; the index after it, or None."""
    if i >= len(cps) or not is_pictographic(cps[i]) or cps[i] in SKIN_TONES:
        return None
    i += 1
    if i < len(cps) and cps[i] in (VS16, VS15):
        i += 1
    if i < len(cps) and cps[i] in SKIN_TONES:
        i += 1
    if i < len(cps) and cps[i] in TAGS:
        while i < len(cps) and cps[i] in TAGS:
            i += 1
        if i >= len(cps) or cps[i] != CANCEL_TAG:
            return None
        i += 1
    return i


def is_single_emoji(text: str) -> bool:
    """True when `text` is exactly one emoji sequence (see the module docstring)."""
    cps = [ord(c) for c in text]
    if not cps or len(cps) > MAX_CODE_POINTS:
        return False
    if cps[0] in REGIONAL_INDICATORS:
        return len(cps) == 2 and cps[1] in REGIONAL_INDICATORS
    if cps[0] in KEYCAP_BASES:
        return cps[1:] in ([KEYCAP], [VS16, KEYCAP])
    i = _element(cps, 0)
    while i is not None and i < len(cps):
        if cps[i] != ZWJ:
            return False
        i = _element(cps, i + 1)
    return i == len(cps)
