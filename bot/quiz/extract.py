"""Which option a final response chose.

The rules, in order; the first that finds anything decides:

1. explicit: "the answer is B", "Answer: C.", "**Answer:** B", "correct answer is (C)", "答案是B";
2. letter: the response, or a line of it, starts with an option letter ("B.", "(B)", "B)") or is
   only one ("B", "**B**"), so a response that lists the options one per line is ambiguous;
3. option_text: the text of an option appears in the response (case and spacing ignored; an
   option found only inside a longer option's text does not count).

If the deciding rule finds two different options, the response is ambiguous and unanswered. Its
first and last candidates are kept for the authors' optimistic score, which picks, after scoring,
whichever of "first match" or "last match" scores higher over the whole set (scorer.py's
`match_choice` and `score` in FreedomIntelligence/HuatuoGPT-o1, commit dc6e08a). Their scorer also
matches any letter standing between non-word characters anywhere in the response and falls back to
the option most similar to the text, so it never reports an item unanswered; we do not do either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Rule = Literal["explicit", "letter", "option_text", "ambiguous", "none"]

_EXPLICIT = (
    r"(?:\b(?i:answer|option|choice)(?:\s+(?i:is|would\s+be|should\s+be)|[*_]*\s*[:\uff1a])"
    r"|答案\s*[是为:\uff1a])[\s*_:\uff1a]*(?:(?i:option|choice)\s+)?[(\[]?\s*"
    r"([{letters}])(?![A-Za-z0-9_])"
)
_LEADING = r"^[\s*_#>]*[(\[]?([{letters}])[*_]*[)\].:](?=[\s*_]|\Z)"
_ALONE = r"^[\s*_#>]*[(\[]?([{letters}])[)\].:]?[\s*_]*$"


@dataclass(frozen=True)
class Extraction:
    """The chosen letter (None if unanswered), the rule that decided, and its first/last match."""

    letter: str | None
    rule: Rule
    first: str | None = None
    last: str | None = None


def _explicit(text: str, options: Mapping[str, str]) -> list[tuple[int, str]]:
    pattern = _EXPLICIT.format(letters="".join(options))
    return [(m.start(1), m.group(1)) for m in re.finditer(pattern, text)]


def _letter(text: str, options: Mapping[str, str]) -> list[tuple[int, str]]:
    letters = "".join(options)
    found = {
        (m.start(1), m.group(1))
        for pattern in (_LEADING, _ALONE)
        for m in re.finditer(pattern.format(letters=letters), text, re.MULTILINE)
    }
    return sorted(found)


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def _option_text(text: str, options: Mapping[str, str]) -> list[tuple[int, str]]:
    text = _normalize(text)
    spans = []
    for letter, option in options.items():
        needle = _normalize(option).rstrip(".")
        if needle:
            pattern = rf"(?<!\w){re.escape(needle)}(?!\w)"
            spans += [(m.start(), m.end(), letter) for m in re.finditer(pattern, text)]
    inside_longer = {
        (start, end, letter)
        for start, end, letter in spans
        for s, e, other in spans
        if other != letter and s <= start and end <= e and e - s > end - start
    }
    return sorted(
        (start, letter) for start, end, letter in spans if (start, end, letter) not in inside_longer
    )


def extract_answer(response: str, options: Mapping[str, str]) -> Extraction:
    """Apply the rules above to a final response; `options` maps capital letters to texts."""
    rules = (("explicit", _explicit), ("letter", _letter), ("option_text", _option_text))
    for rule, find in rules:
        if found := [letter for _, letter in find(response, options)]:
            if len(set(found)) > 1:
                return Extraction(None, "ambiguous", found[0], found[-1])
            return Extraction(found[0], rule, found[0], found[-1])  # type: ignore[arg-type]
    return Extraction(None, "none")
