"""Markdown (as the model writes it) to Slack mrkdwn, and Slack's text escaping both ways.

Line by line: code blocks are only escaped (a fence's language tag is dropped, Slack would show
it); elsewhere headings become bold lines, bullets become "•", **bold** becomes *bold*,
*italic* becomes _italic_, ~~struck~~ becomes ~struck~ and [text](url) becomes <url|text>.
Inline `code` is left alone.

Model output is untrusted: every `<`, `>` and `&` it writes is escaped, so the only Slack markup
in the result is the links written here, and those go only to web and mail addresses
(bot/core/links.py): `[x](!here)` stays text and cannot ping anyone, and a label naming another
place than the link's target is replaced by the target.
"""

from __future__ import annotations

import re

from bot.core.links import disguises, is_web

FENCE = "```"
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:\s*\1){2,}\s*$")
_CODE_OR_LINK = re.compile(r"(`[^`\n]+`)|!?\[([^\]\n]+)\]\((\S+?)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_BOLD_MARK = "\x00"  # stands for a bold `*` while single `*` become `_`


def escape(text: str) -> str:
    """Escape the three characters Slack treats as markup (so model output cannot ping anyone)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Undo Slack's escaping of message text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _is_fence(line: str) -> bool:
    """A line that opens or closes a code block (not a whole ```code``` on one line)."""
    stripped = line.strip()
    return stripped.startswith(FENCE) and stripped.count(FENCE) == 1


def close_open_fence(markdown: str) -> str:
    """Close a code block left open (a truncated answer) so that what follows is not code."""
    fences = sum(_is_fence(line) for line in markdown.split("\n"))
    return f"{markdown}\n{FENCE}" if fences % 2 else markdown


def to_mrkdwn(markdown: str) -> str:
    """Slack mrkdwn for a Markdown text."""
    out, in_code = [], False
    for line in markdown.split("\n"):
        if _is_fence(line):
            in_code = not in_code
            out.append(FENCE)  # without the language tag, which Slack would show
        elif in_code:
            out.append(escape(line))
        else:
            out.append(_block(escape(line)))
    return "\n".join(out)


def _block(line: str) -> str:
    if heading := _HEADING.match(line):
        title = _inline(heading.group(1).replace("**", "").replace("__", ""))
        return f"*{title}*" if title else ""
    if _RULE.match(line):
        return "──────────"
    if bullet := _BULLET.match(line):
        return f"{bullet.group(1)}• {_inline(bullet.group(2))}"
    return _inline(line)


def _inline(text: str) -> str:
    """Emphasis and links, leaving inline code spans untouched."""
    out, pos = [], 0
    for match in _CODE_OR_LINK.finditer(text):
        out.append(_emphasis(text[pos : match.start()]))
        code, label, url = match.groups()
        out.append(code or _link(label, url) or match.group(0))
        pos = match.end()
    out.append(_emphasis(text[pos:]))
    return "".join(out)


def _link(label: str, url: str) -> str | None:
    """Slack's link for a Markdown link (both parts escaped already); None: not a web link."""
    target = unescape(url)
    if not is_web(target):
        return None
    url = url.replace("|", "%7C")  # Slack would take what follows a "|" for the label
    if disguises(unescape(label), target):
        return f"<{url}>"
    return f"<{url}|{_emphasis(label).replace('|', '¦')}>"


def _emphasis(text: str) -> str:
    text = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(1) or m.group(2)}{_BOLD_MARK}", text)
    text = _ITALIC.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    return text.replace(_BOLD_MARK, "*")
