"""Model output can neither ping people nor disguise a link: the link rule (bot/core/links.py),
the Slack converter and Discord's honest links, on each form the issue names and on a generated
corpus of hostile forms."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest

from bot.core.links import MASKED_LINK, disguises, honest_links, is_web
from bot.slack.mrkdwn import to_mrkdwn, unescape

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


# ---- the forms the issue names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("[x](!channel)", "[x](!channel)"),
        ("[team](!here)", "[team](!here)"),
        ("[all](!everyone)", "[all](!everyone)"),
        ("[Dr](@U0123)", "[Dr](@U0123)"),
        ("[x](!subteam^S1)", "[x](!subteam^S1)"),
        ("[x](#C0123)", "[x](#C0123)"),
        ("[x](!date^1392734382^{date}|Feb 18)", "[x](!date^1392734382^{date}|Feb 18)"),
        ("[https://intranet.example](https://evil.example)", "<https://evil.example>"),
    ],
)
def test_slack_links_to_anything_but_the_web_are_text_and_disguised_ones_show_their_target(
    markdown: str, mrkdwn: str
) -> None:
    assert to_mrkdwn(markdown) == mrkdwn
    assert_slack_safe(to_mrkdwn(markdown))


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("[NICE](https://www.nice.org.uk/guidance)", "<https://www.nice.org.uk/guidance|NICE>"),
        ("[nice.org.uk](https://nice.org.uk/x)", "<https://nice.org.uk/x|nice.org.uk>"),
        ("[www.who.int](https://who.int)", "<https://who.int|www.who.int>"),
        ("[write](mailto:help@hospital.example)", "<mailto:help@hospital.example|write>"),
        ("[HTTP link](HTTP://Example.org/A)", "<HTTP://Example.org/A|HTTP link>"),
        ("[a & b](https://x.example/?a=1&b=2)", "<https://x.example/?a=1&amp;b=2|a &amp; b>"),
        ("[x](https://ok.example|!here)", "<https://ok.example%7C!here|x>"),
    ],
)
def test_honest_web_and_mail_links_stay_links(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    "label",
    [
        "https://intranet.example",
        "intranet.example",
        "Intranet.Example/login",
        "see intranet.example for the form",
        "https://intranet.example@evil.example",
        "**intranet**.example",
        "intra\u200bnet.example",
        "".join(chr(ord(c) + 0xFEE0) for c in "intranet.example"),  # full-width
        "intranet。example",
        "http://intranet/",
        "10.0.0.7",
        "dr@intranet.example",
        "evil.example.intranet.example",
    ],
)
def test_a_label_naming_another_place_disguises_the_link(label: str) -> None:
    assert disguises(label, "https://evil.example/login")
    assert to_mrkdwn(f"[{label}](https://evil.example/login)") == "<https://evil.example/login>"
    assert honest_links(f"[{label}](https://evil.example/login)") == "<https://evil.example/login>"


@pytest.mark.parametrize(
    ("label", "target"),
    [
        ("Guideline", "https://evil.example"),
        ("evil.example", "https://www.evil.example/page"),
        ("https://evil.example/other", "https://evil.example/page"),
        ("dr@evil.example", "mailto:dr@evil.example"),
        ("evil.example", "mailto:dr@evil.example"),
        ("version 2.0, 3 mg/kg", "https://evil.example"),
    ],
)
def test_a_label_naming_the_target_or_no_place_does_not(label: str, target: str) -> None:
    assert not disguises(label, target)


@pytest.mark.parametrize(
    ("target", "web"),
    [
        ("https://example.org/a", True),
        ("HTTP://example.org", True),
        ("mailto:dr@example.org", True),
        ("mailto:@U0123", False),
        ("mailto:!here", False),
        ("https://", False),
        ("https:!here", False),
        ("http://[::1", False),
        ("!here", False),
        ("@U0123", False),
        ("javascript:alert(1)", False),
        ("slack://channel?id=C1", False),
        ("//example.org", False),
    ],
)
def test_only_http_https_and_mailto_targets_are_web(target: str, web: bool) -> None:
    assert is_web(target) is web


def test_discord_masked_links_in_every_form_are_made_honest() -> None:
    evil = "https://evil.example/login"
    for markdown in [
        f"[https://intranet.example]({evil})",
        f"[https://intranet.example](<{evil}>)",
        f"[https://intranet.example]( {evil} 'the intranet')",
        f"[[https://intranet.example]]({evil})",
        f"[see [the form] at intranet.example]({evil})",
        f"[[x](https://intranet.example)]({evil})",
        f"**[intranet.example]({evil})**",
    ]:
        shown = honest_links(markdown)
        assert evil in shown and "intranet.example" not in shown, (markdown, shown)
        assert_no_disguise(shown)
    kept = f"[the login page]({evil}) and [evil.example](https://evil.example)"
    assert honest_links(kept) == kept


# ---- the generated corpus ---------------------------------------------------------------------


def test_the_corpus_is_large_and_covers_every_token() -> None:
    assert len(CORPUS) == len(FORMS) * len(TOKENS) * 5 > 2000
    for token in TOKENS:
        assert any(token in text for text in CORPUS)


@pytest.mark.parametrize("form", FORMS)
def test_no_corpus_text_becomes_slack_markup(form: str) -> None:
    for token in TOKENS:
        for variant in variants(token):
            text = form.replace("{t}", variant)
            assert_slack_safe(to_mrkdwn(text))
            assert_slack_safe(to_mrkdwn(f"[https://intranet.example]({text})"))


@pytest.mark.parametrize("form", FORMS)
def test_no_corpus_text_keeps_a_disguised_masked_link_for_discord(form: str) -> None:
    for token in TOKENS:
        for variant in variants(token):
            text = form.replace("{t}", variant)
            for hostile in (text, f"[intranet.example]({text})", f"[{text}](https://e.example)"):
                assert_no_disguise(honest_links(hostile))
