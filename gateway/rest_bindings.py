"""How Envoy matches a REST binding: its priority among templates and its verb.

The JWT rules and the pre-transcoding routes must list REST templates in the order the
transcoder prefers them (most specific first), or a broad template could shadow a
narrower one with other access rules; both take that order from `specificity`.
"""

from __future__ import annotations

from envoy_data_plane.envoy.config.route.v3 import HeaderMatcher
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher

from .descriptors import HttpBinding


def specificity(binding: HttpBinding) -> tuple[int, ...]:
    """Sort key: per segment literal (0) < single wildcard (1) < `**` (2), then verb-first."""
    body = binding.template.split("?", 1)[0]
    key: list[int] = []
    depth = 0
    segment: list[str] = []

    def close() -> None:
        text = "".join(segment)
        if text == "**" or "=**" in text:
            key.append(2)
        elif text == "*" or text.startswith("{"):
            key.append(1)
        else:
            key.append(0)
        segment.clear()

    for ch in body[1:]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "/" and depth == 0:
            close()
        else:
            segment.append(ch)
    close()
    has_verb = ":" in body.rsplit("/", 1)[-1].split("}")[-1]
    return (*key, 0 if has_verb else 1)


def verb_matcher(binding: HttpBinding) -> HeaderMatcher:
    """Matches the binding's HTTP verb (`:method`), which a path regex cannot."""
    return HeaderMatcher(name=":method", string_match=StringMatcher(exact=binding.verb))
