"""Identifiers replaced by placeholders before text leaves the process (HUATUO_REDACT_PHI).

Pattern-based, so it catches identifiers in their usual written forms only: emails; phone numbers
of 9-15 digits; record numbers after a label (MRN, medical record number, 病历号, 住院号);
dates of birth after a label (DOB, date of birth, born on, 出生日期); names after "patient",
"Mr.", "Mrs.", "Ms.", "Miss" or "Name:"/"姓名：" when written with capitals. It leaves clinical
content alone (doses, lab values, ages, years, blood pressures) and misses names written anywhere
else, unlabelled numbers and dates, addresses, and identifiers in other languages.
"""

from __future__ import annotations

import re

_DATE = (
    r"(\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"
    r"|\d{1,2}(st|nd|rd|th)? (of )?[A-Z][a-z]{2,8}\.?,? \d{4}"
    r"|[A-Z][a-z]{2,8}\.? \d{1,2}(st|nd|rd|th)?,? \d{4}"
    r"|\d{4}\s*[年/.-]\s*\d{1,2}\s*[月/.-]\s*\d{1,2}\s*日?)"
)
_WORD = r"[A-Z][a-z'’]+(?:-[A-Z]?[a-z'’]+)*"
_NAME = rf"{_WORD}(?:\s+{_WORD})?"
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "[EMAIL]"),
    (
        re.compile(
            r"((?i:\b(?:MRN|(?:medical )?record (?:number|no\.?)|chart (?:number|no\.?))"
            r"\s*[:#]?\s*))[A-Z0-9-]*\d[A-Z0-9-]*"
        ),
        r"\g<1>[MRN]",
    ),
    (re.compile(r"((?:病历号|住院号|病案号|门诊号)\s*[:：]?\s*)[A-Za-z0-9-]+"), r"\g<1>[MRN]"),
    (
        re.compile(rf"((?i:\b(?:DOB|D\.O\.B\.?|date of birth|born on|born)\s*:?\s*)){_DATE}"),
        r"\g<1>[DOB]",
    ),
    (re.compile(rf"((?:出生日期|出生于|生日)\s*[:：]?\s*){_DATE}"), r"\g<1>[DOB]"),
    (
        re.compile(rf"(\b(?i:patient)\s+|\b(?:Mr|Mrs|Ms|Miss|Mx)\.?\s+|\bName:\s*){_NAME}"),
        r"\g<1>[NAME]",
    ),
    (re.compile(r"(姓名\s*[:：]\s*)[\u4e00-\u9fff·]{2,4}"), r"\g<1>[NAME]"),
)
_PHONE = re.compile(
    r"(?<![A-Za-z0-9_/.])(\+?\d{9,15}|(\+\d{1,3}[\s.-]?)?(\(\d{2,5}\)[\s.-]?|\d{2,5}[\s.-])?"
    r"\d{3,4}[\s.-]?\d{3,4})(?![A-Za-z0-9_/]|\.\d)"
)


def _phone(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group())
    return "[PHONE]" if 9 <= digits <= 15 else match.group()


def redact(text: str) -> str:
    """`text` with emails, phone numbers, record numbers, birth dates and names replaced."""
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    return _PHONE.sub(_phone, text)
