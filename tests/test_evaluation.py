"""`huatuo-bot eval`: extraction rules, exact scores, resume, bad rows, errors, the real model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.cli import main
from bot.evaluation import command
from bot.evaluation.results import Result
from bot.evaluation.scoring import summarize, wilson_interval
from bot.quiz.extract import extract_answer
from inference.engine import Generation
from inference.scripted import Script, ScriptedEngine

OPTIONS = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Alteplase"}
THINKING = "## Thinking\n\nLet me weigh each option in turn.\n\n## Final Response\n\n"


def gold(case: int) -> str:
    return "ABCD"[case % 4]


def wrong(case: int) -> str:
    return "ABCD"[(case + 1) % 4]


def right(case: int) -> str:
    return f"The answer is {gold(case)}."


def write_items(path: Path, count: int) -> Path:
    """`count` items; item N is on line N and asks "Case N"."""
    rows = [
        {"question": f"Case {n}: which drug?", "options": OPTIONS, "answer_idx": gold(n)}
        for n in range(1, count + 1)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def scripted(final_for: Callable[[int], str | Script]) -> Callable[[str], Script]:
    """A script_for that reads the case number from the prompt and answers in Huatuo's format."""

    def script_for(prompt: str) -> Script:
        made = final_for(int(re.search(r"Case (\d+):", prompt)[1]))
        if isinstance(made, Script):
            return made
        text = THINKING + made
        return Script(tuple(text[i : i + 7] for i in range(0, len(text), 7)))

    return script_for


@dataclass
class Run:
    code: int
    out: str
    err: str
    engine: ScriptedEngine

    @property
    def summary(self) -> dict:
        [line] = self.out.strip().splitlines()
        return json.loads(line)

    @property
    def asked(self) -> list[int]:
        prompts = [g.request.messages[-1].content for g in self.engine.requests]
        return sorted(int(re.search(r"Case (\d+):", p)[1]) for p in prompts)


@pytest.fixture
def evaluate(monkeypatch, tmp_path, capsys) -> Callable[..., Run]:
    """Run `huatuo-bot eval ARGS` in-process on a scripted engine; no settings from outside."""
    for name in [k for k in os.environ if k.startswith("HUATUO_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def run(final_for: Callable[[int], str | Script], *args: str, **engine_options) -> Run:
        made: list[ScriptedEngine] = []

        def make_engine(settings) -> ScriptedEngine:
            made.append(ScriptedEngine(scripted(final_for), **engine_options))
            return made[-1]

        monkeypatch.setattr(command, "make_engine", make_engine)
        code = main(["eval", *args])
        out, err = capsys.readouterr()
        return Run(code, out, err, made[-1])

    return run


# ---- extraction ------------------------------------------------------------------------------

MEDQA = {
    "A": "Renal papillary necrosis",
    "B": "Cholesterol embolization",
    "C": "Eosinophilic granulomatosis with polyangiitis",
    "D": "Polyarteritis nodosa",
}


@pytest.mark.parametrize(
    ("response", "letter", "rule"),
    [
        ("The answer is C.", "C", "explicit"),
        ("Answer: C.", "C", "explicit"),
        ("**Answer:** B", "B", "explicit"),
        ("The correct answer is (C).", "C", "explicit"),
        ("**Answer**: D. Polyarteritis nodosa", "D", "explicit"),
        ("Final answer:\n\nA", "A", "explicit"),
        ("The best option is B, not D.", "B", "explicit"),
        ("答案是B", "B", "explicit"),
        ("Renal papillary necrosis is unlikely; the answer is B.", "B", "explicit"),
        ("B", "B", "letter"),
        ("(B)", "B", "letter"),
        ("B.", "B", "letter"),
        ("**C. Eosinophilic granulomatosis with polyangiitis**, given the asthma.", "C", "letter"),
        ("After weighing it all:\n\nD\n", "D", "letter"),
        ("Most likely:\n(D) Polyarteritis nodosa", "D", "letter"),
        ("A. Renal papillary necrosis\nB. Cholesterol embolization", None, "ambiguous"),
        ("This is most consistent with cholesterol  Embolization.", "B", "option_text"),
        ("Polyarteritis nodosa fits best.", "D", "option_text"),
        ("The answer is A. On reflection, the answer is C.", None, "ambiguous"),
        ("Cholesterol embolization rather than polyarteritis nodosa.", None, "ambiguous"),
        ("A 61-year-old man with malaise.", None, "none"),
        ("Option A is tempting but wrong.", None, "none"),
        ("The answer is B12 deficiency.", None, "none"),
        ("", None, "none"),
    ],
)
def test_each_extraction_rule(response, letter, rule):
    found = extract_answer(response, MEDQA)
    assert (found.letter, found.rule) == (letter, rule)


def test_an_option_inside_a_longer_option_does_not_count():
    options = {"A": "Aspirin", "B": "Aspirin and clopidogrel", "C": "Heparin", "D": "None"}
    assert extract_answer("Start aspirin and clopidogrel.", options).letter == "B"
    assert extract_answer("Aspirin now, heparin later.", options).rule == "ambiguous"


# ---- scores ----------------------------------------------------------------------------------


def test_wilson_interval_matches_hand_computation():
    # centre = (p + z²/2n) / (1 + z²/n), half = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n), z = 1.96
    # 6/10: centre 0.79207/1.38415 = 0.57225, half 0.35929/1.38415 = 0.25957
    assert wilson_interval(6, 10) == pytest.approx((0.31267, 0.83182), abs=1e-5)
    # 0/10: the upper bound is z²/(n + z²) = 3.84146/13.84146
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_accuracy_interval_unanswered_and_truncated_are_exact(evaluate, tmp_path):
    cut_off = Script(("## Thinking\n\n", "still weighing"), finish="length")

    def final(case: int) -> str | Script:
        if case <= 10:
            return f"The answer is {gold(case)}."  # cases 1-10 right
        if case <= 16:
            return f"The answer is {wrong(case)}."  # 11-16 wrong
        return "I am not sure." if case <= 18 else cut_off  # 17-18 unanswered, 19-20 cut off

    run = evaluate(final, "--json", str(write_items(tmp_path / "items.jsonl", 20)))
    assert run.code == 0, run.err
    summary = run.summary
    assert (summary["items"], summary["scored"], summary["correct"]) == (20, 20, 10)
    assert summary["accuracy"] == 0.5
    # 10/20 by hand: centre = (0.5 + 0.09604)/1.19207 = 0.5; half = 1.95996·0.12207/1.19207
    assert summary["ci95"] == pytest.approx([0.29930, 0.70070], abs=1e-5)
    assert (summary["unanswered"], summary["truncated"], summary["errors"]) == (4, 2, 0)
    assert summary["rules"] == {"explicit": 16, "none": 4}


def test_optimistic_score_is_the_better_of_first_and_last_match(evaluate, tmp_path):
    def final(case: int) -> str:
        if case <= 2:
            return f"The answer is {gold(case)}."  # honest and both matches right
        if case <= 5:
            return f"The answer is {wrong(case)}. No: the answer is {gold(case)}."  # last right
        return f"The answer is {gold(case)}. No: the answer is {wrong(case)}."  # first right

    run = evaluate(final, "--json", str(write_items(tmp_path / "items.jsonl", 6)))
    summary = run.summary
    assert summary["correct"] == 2 and summary["unanswered"] == 4  # hedged answers score nothing
    optimistic = summary["optimistic"]
    assert (optimistic["first_match_correct"], optimistic["last_match_correct"]) == (3, 5)
    assert optimistic["accuracy"] == pytest.approx(5 / 6)
    assert "upper bound" in optimistic["note"]


def test_summarize_counts_errors_apart_from_scored_items():
    def result(line: int, **fields) -> Result:
        return Result(line=line, fingerprint="f", setup="s", gold="A", **fields)

    results = [
        result(1, extracted="A", correct=True, first="A", last="A", rule="explicit"),
        result(2, error="boom"),
    ]
    summary = summarize(results, items=3)
    assert (summary.scored, summary.correct, summary.errors, summary.accuracy) == (1, 1, 1, 1.0)
    assert summary.as_dict()["not_run"] == 1


# ---- running ---------------------------------------------------------------------------------


def test_table_and_json_output(evaluate, tmp_path):
    items = str(write_items(tmp_path / "items.jsonl", 4))
    table = evaluate(lambda case: f"Answer: {gold(case)}", items, "--temperature", "0")
    assert table.code == 0, table.err
    for label in ("accuracy", "100.0%", "4/4 correct", "95 % CI", "unanswered", "truncated",
                  "optimistic", "upper bound", "scripted", "temperature 0.0"):  # fmt: skip
        assert label in table.out
    summary = evaluate(lambda case: f"Answer: {gold(case)}", items, "--json").summary
    assert {
        "model", "dataset", "sampling", "items", "scored", "correct", "accuracy", "ci95",
        "unanswered", "truncated", "errors", "optimistic", "rules", "wall_seconds", "skipped_rows",
    } <= summary.keys()  # fmt: skip
    assert summary["sampling"] == {"temperature": 0.5, "top_p": 0.9, "max_new_tokens": 2048}


def test_resume_asks_only_the_items_not_done(evaluate, tmp_path):
    items, output = str(write_items(tmp_path / "items.jsonl", 10)), tmp_path / "out.jsonl"
    first = evaluate(right, "--limit", "4", "--output", str(output), items)
    assert first.code == 0 and first.asked == [1, 2, 3, 4]
    rest = evaluate(right, "--resume", "--json", "--output", str(output), items)
    assert rest.asked == [5, 6, 7, 8, 9, 10]
    assert (rest.summary["items"], rest.summary["correct"], rest.summary["items_run"]) == (
        10,
        10,
        6,
    )
    again = evaluate(right, "--resume", "--json", "--output", str(output), items)
    assert not again.engine.started and again.summary["correct"] == 10  # nothing left to load for
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["line"] for r in records) == list(range(1, 11))
    assert {"line", "gold", "extracted", "rule", "correct", "truncated", "tokens", "seconds"} <= (
        records[0].keys()
    )
    assert "text" not in records[0]


def test_output_is_never_overwritten_or_mixed(evaluate, tmp_path):
    items, output = str(write_items(tmp_path / "items.jsonl", 2)), tmp_path / "out.jsonl"
    assert evaluate(right, "--output", str(output), "--store-text", items).code == 0
    assert "## Final Response" in json.loads(output.read_text().splitlines()[0])["text"]
    assert evaluate(right, "--output", str(output), items).code == 2  # exists, no --resume
    mixed = evaluate(right, "--resume", "--temperature", "0", "--output", str(output), items)
    assert mixed.code == 2 and "temperature=0.5" in mixed.err
    assert evaluate(right, "--resume", items).code == 2  # --resume needs --output


def test_bad_rows_are_reported_with_their_line_and_skipped(evaluate, tmp_path):
    good = {"question": "Case 1: which drug?", "options": OPTIONS, "answer_idx": "B"}
    rows = [
        json.dumps(good),
        "{not json",
        json.dumps({"question": "Case 3: which?", "answer_idx": "A"}),
        json.dumps({**good, "question": "Case 4: which?", "answer_idx": "E"}),
        "",
        json.dumps({**good, "question": "Case 6: which?", "answer_idx": "C"}),
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(rows) + "\n")
    run = evaluate(lambda case: "Answer: B", "--json", str(path))
    assert run.code == 0
    assert f"{path}:2: invalid JSON" in run.err
    assert f"{path}:3: 'options' must be" in run.err
    assert f"{path}:4: answer_idx 'E' is not one of the options A, B, C, D" in run.err
    assert run.asked == [1, 6]
    assert (run.summary["items"], run.summary["correct"], run.summary["skipped_rows"]) == (2, 1, 3)


def test_an_engine_error_is_recorded_for_its_item_and_retried_on_resume(evaluate, tmp_path):
    items, output = str(write_items(tmp_path / "items.jsonl", 5)), tmp_path / "out.jsonl"
    broken = Script(("## Thinking\n\n", "hm"), fail_at=1)
    run = evaluate(
        lambda c: broken if c == 3 else right(c), "--json", "--output", str(output), items
    )
    assert run.code == 0
    assert (run.summary["scored"], run.summary["errors"], run.summary["correct"]) == (4, 1, 4)
    [failed] = [r for r in map(json.loads, output.read_text().splitlines()) if r["error"]]
    assert failed["line"] == 3 and "failed on purpose" in failed["error"]
    retry = evaluate(right, "--resume", "--json", "--output", str(output), items)
    assert retry.asked == [3] and retry.summary["errors"] == 0 and retry.summary["correct"] == 5


def test_in_flight_items_never_exceed_the_concurrency_or_the_engine_queue(
    evaluate, tmp_path, monkeypatch
):
    items = str(write_items(tmp_path / "items.jsonl", 12))
    in_flight: list[int] = []
    submitted: list[Generation] = []
    original = ScriptedEngine.submit

    def counting_submit(self, request):
        in_flight.append(1 + sum(not g.done for g in submitted))  # never fewer than ours
        submitted.append(original(self, request))
        return submitted[-1]

    monkeypatch.setattr(ScriptedEngine, "submit", counting_submit)
    run = evaluate(right, "--json", "--concurrency", "8", items, step_delay=0.002, max_queue=3)
    assert max(in_flight) == 3 and run.summary["correct"] == 12
    in_flight.clear()
    monkeypatch.setenv("HUATUO_MAX_BATCH", "2")  # the default concurrency
    run = evaluate(right, "--json", items, step_delay=0.002)
    assert max(in_flight) == 2 and run.summary["correct"] == 12


# ---- the real model, through the real command --------------------------------------------------


@pytest.mark.model
def test_builtin_model_end_to_end(tmp_path):
    items, output = write_items(tmp_path / "items.jsonl", 3), tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUATUO_")}
    command_line = [sys.executable, "-m", "bot.cli", "eval", "--model", "builtin:smollm2",
                    "--max-new-tokens", "24", "--output", str(output), str(items)]  # fmt: skip
    done = subprocess.run(
        command_line, capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "accuracy" in done.stdout and "optimistic" in done.stdout
    assert "3 items" in done.stdout
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["line"] for r in records) == [1, 2, 3]
    assert all(r["error"] is None and 0 < r["tokens"] <= 24 for r in records)
