"""Model output can neither ping people nor disguise a link: the link rule (bot/core/links.py),
the Slack converter and Discord's honest links, on each form the issue names and on a generated
corpus of hostile forms."""

from __future__ import annotations

import pytest

from bot.core.links import disguises, honest_links, is_web
from bot.slack.mrkdwn import to_mrkdwn
from tests.harness.links import (
    CORPUS,
    FORMS,
    TOKENS,
    assert_no_disguise,
    assert_slack_safe,
    variants,
)

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
