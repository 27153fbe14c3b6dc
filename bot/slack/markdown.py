"""Model output (Markdown) made safe for Slack's `markdown` blocks and streamed `markdown_text`.

Slack renders standard Markdown there, but still reads its own markup in it (`<!here>`, `<@U…>`,
`<url|label>`), and the model's output is untrusted. So every `<`, `>` and `&` is escaped (nothing
the model writes is Slack markup); a masked link stays a link only to a web or mail address whose
label names no other place (bot/core/links.py): a disguised one shows its bare target, any other
becomes the text "label (target)"; and `@here`, `@channel`, `@everyone` are broken by a word
joiner. The same text is the message's plain-text fallback (`text`), which Slack also parses.
"""

from __future__ import annotations

import re

from bot.core.links import MASKED_LINK, disguises, is_web
from bot.slack.mrkdwn import FENCE, escape, unescape

BLOCK_LIMIT = 12_000  # characters of a markdown block's text, or of one markdown_text
_BROADCAST = re.compile(r"@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_CODE_SPAN = re.compile(r"`[^`\n]+`")
WORD_JOINER = "\u2060"


def safe_markdown(markdown: str) -> str:
    """`markdown` as Slack may show it from untrusted output: see the module docstring."""
    out: list[str] = []
    prose: list[str] = []  # lines outside code blocks since the last fence: a link may span them
    in_code = False
    for line in escape(markdown).split("\n"):
        stripped = line.strip()
        fence = stripped.startswith(FENCE) and stripped.count(FENCE) == 1
        if in_code or fence:
            if prose:
                out.append(_outside_code("\n".join(prose)))
                prose = []
            out.append(line)
            in_code ^= fence
        else:
            prose.append(line)
    if prose:
        out.append(_outside_code("\n".join(prose)))
    return _BROADCAST.sub(f"@{WORD_JOINER}", "\n".join(out))


def _outside_code(text: str) -> str:
    """Links of a text outside code blocks, leaving inline code spans as they are."""
    pieces, pos = [], 0
    for span in _CODE_SPAN.finditer(text):
        pieces += [_links(text[pos : span.start()]), span.group(0)]
        pos = span.end()
    return "".join([*pieces, _links(text[pos:])])


def _links(text: str) -> str:
    def honest(link: re.Match[str]) -> str:
        label, target = link.group(1), re.sub(r"\\(.)", r"\1", link.group(2))
        if not is_web(unescape(target)):
            return f"{label} ({target})"  # a space between "]" and "(": not a link
        if disguises(unescape(label), unescape(target)):
            return target
        return link.group(0)

    return MASKED_LINK.sub(honest, text)


def markdown_block(markdown: str) -> dict[str, str]:
    """A `markdown` block showing `markdown` (made safe already)."""
    return {"type": "markdown", "text": markdown}
