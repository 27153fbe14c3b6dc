"""Hostile link text for tests: every form and token that could ping or mislead, and the checks
that what the bot showed does neither."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

from bot.core.links import MASKED_LINK, disguises, is_web
from bot.slack.mrkdwn import unescape
from tests.fakes.slack import FakeSlack

# Slack's special tokens, as a link target would make them: <!here>, <@U…>, <#C…>, ...
TOKENS = [
    "!here",
    "!channel",
    "!everyone",
    "@U0123ABCD",
    "@W0123ABCD",
    "#C0123ABCD",
    "!subteam^S0123ABCD",
    "!subteam^S0123ABCD|@doctors",
    "!date^1392734382^{date_short}|Feb 18",
]
FORMS = [  # {t}: a token; every way we could think of to make Slack read it as markup
    "[x]({t})",
    "[{t}]({t})",
    "![x]({t})",
    "[x](<{t}>)",
    "[x]( {t} )",
    '[x]({t} "title")',
    "[[x]]({t})",
    "[x [y] z]({t})",
    "[x]]({t})",
    "[x](({t}))",
    "\\[x\\]({t})",
    "[x\\]({t})",
    "[x](\\{t})",
    "[x](\n{t})",
    "`[x]({t})`",
    "`<{t}>`",
    "```\n<{t}>\n```",
    "```\n[x]({t})\n```",
    "**[x]({t})**",
    "_[x]({t})_",
    "# [x]({t})",
    "- [x]({t})",
    "> <{t}>",
    "<{t}>",
    "<{t}|x>",
    "<<{t}>>",
    "<{t}",
    "{t}>",
    "&lt;{t}&gt;",
    "&amp;lt;{t}&amp;gt;",
    "&#60;{t}&#62;",
    "&#x3C;{t}&#x3E;",
    "\uff1c{t}\uff1e",  # full-width < >
    "\u2039{t}\u203a",  # single angle quotation marks
    "<\u200b{t}>",
    "\u200b<{t}>",
    "<{t}\u200b>",
    "[x](\u200b{t})",
    "[x](https://ok.example|{t})",
    "[x](https://ok.example|<{t}>)",
    "[x](https://ok.example){t}>",
    "[<{t}>](https://ok.example)",
    "[x|<{t}>](https://ok.example)",
    "[x](https://ok.example/<{t}>)",
    "<https://ok.example|<{t}>>",
    "<https://ok.example|x><{t}>",
    "[x](mailto:{t})",
    "[x](mailto:a@b.example|{t})",
    "<mailto:{t}>",
    "[x](slack://{t})",
    "[x](javascript:{t})",
    "[x](HTTPS:{t})",
    "[x](https:{t})",
    "[x](//{t})",
]


def variants(token: str) -> Iterator[str]:
    """The token as written, in capitals, and with zero-width or full-width characters."""
    yield token
    yield token.upper()
    yield f"\u200b{token}"
    yield f"{token[0]}\u200b{token[1:]}"
    yield f"{chr(ord(token[0]) + 0xFEE0)}{token[1:]}"  # full-width ! @ #


CORPUS = [
    form.replace("{t}", variant)
    for form, token in itertools.product(FORMS, TOKENS)
    for variant in variants(token)
]
SLACK_MARKUP = re.compile(r"<([^<>]*)>")
SLACK_LINK = re.compile(r"<((?:https?|mailto):[^<>|]*)(?:\|([^<>]*))?>", re.IGNORECASE)


def assert_slack_safe(text: str, *allowed: str) -> None:
    """In Slack text every <…> is a web or mail link whose label does not disguise it (or one of
    the `allowed` mentions the bot itself added): nothing pings, names a channel or misleads."""
    for mention in allowed:
        text = text.replace(mention, "")
    assert not re.search(r"<\s*[!@#]", text), text
    for inside in SLACK_MARKUP.findall(text):
        assert inside.lower().startswith(("http://", "https://", "mailto:")), text
    for target, label in SLACK_LINK.findall(text):
        assert not disguises(unescape(label), unescape(target)), text


def masked_links(markdown: str) -> Iterator[tuple[str, str]]:
    """Every (label, target) a masked link could be read as, from any "[" on."""
    for start in (found.start() for found in re.finditer(r"\[", markdown)):
        if link := MASKED_LINK.match(markdown, start):
            yield link.group(1), re.sub(r"\\(.)", r"\1", link.group(2))


def assert_no_disguise(markdown: str) -> None:
    """No masked link in `markdown` has a label that names another place than its target."""
    for label, target in masked_links(markdown):
        assert not (is_web(target) and disguises(label, target)), markdown


POSTING = {"chat.postMessage", "chat.update", "chat.postEphemeral", "files.completeUploadExternal"}


def strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def slack_shown(slack: FakeSlack) -> list[str]:
    """Every text the bot gave Slack to show: messages, edits, their blocks, private messages,
    file titles and comments."""
    calls = [call.params for call in slack.calls if call.method in POSTING]
    return [text for params in calls for text in strings(params)]
