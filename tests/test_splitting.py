"""Long answers split for chat platforms: limits, paragraphs, code blocks, multi-byte text."""

from __future__ import annotations

import pytest

from bot.core.splitting import split_text, utf8_size


def test_short_text_is_one_message():
    assert split_text("Short answer.", 2000) == ["Short answer."]


def test_paragraphs_are_kept_whole_and_nothing_is_lost():
    paragraphs = [f"Paragraph {i}: " + "word " * 60 for i in range(30)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    chunks = split_text(text, 2000)
    assert len(chunks) > 1
    assert all(len(c) <= 2000 for c in chunks)
    assert all(c.startswith("Paragraph") and c.endswith("word") for c in chunks)
    assert "\n\n".join(chunks) == text


def test_code_block_cut_is_closed_and_reopened():
    code = "\n".join(f"x_{i} = compute({i})  # step" for i in range(200))
    text = f"Here is the code:\n\n```python\n{code}\n```\n\nDone."
    chunks = split_text(text, 1000)
    assert len(chunks) > 2
    for chunk in chunks:
        assert len(chunk) <= 1000
        assert chunk.count("```") % 2 == 0, chunk  # every message has balanced fences
    assert all(c.startswith("```python") for c in chunks[1:-1])
    rejoined = "\n".join(line for c in chunks for line in c.split("\n") if "```" not in line)
    assert all(f"x_{i} = compute({i})" in rejoined for i in range(200))


@pytest.mark.parametrize("char", ["é", "血", "🩺"])
def test_multibyte_text_is_never_cut_inside_a_character(char):
    text = (char * 50 + " ") * 200  # long lines of multi-byte characters, measured in bytes
    chunks = split_text(text, 3500, size=utf8_size)
    assert len(chunks) > 1
    for chunk in chunks:
        assert utf8_size(chunk) <= 3500
        chunk.encode("utf-8").decode("utf-8")  # whole characters only
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")


def test_a_line_without_spaces_is_still_split():
    text = "A" * 5000
    chunks = split_text(text, 2000)
    assert all(len(c) <= 2000 for c in chunks) and "".join(chunks) == text
