"""The emergency notice: first-person emergencies trigger it, teaching and third-person do not."""

from __future__ import annotations

import pytest

from bot.core.safety import emergency_kinds, emergency_notice

TRIGGERS = [
    ("I have crushing chest pain right now", "chest pain"),
    ("I'm having chest pain spreading to my left arm and I'm sweating", "chest pain"),
    ("I think I'm having a heart attack", "chest pain"),
    ("My face is drooping and I can't lift my arm", "stroke"),
    ("Suddenly my speech is slurred and one side of my face feels numb", "stroke"),
    ("I took 40 pills", "overdose"),
    ("I think I overdosed on my sleeping pills an hour ago", "overdose"),
    ("I swallowed a whole bottle of paracetamol", "overdose"),
    ("I want to kill myself", "suicide"),
    ("I don't want to live anymore", "suicide"),
    ("I'm suicidal tonight and I have a plan", "suicide"),
    ("I can't breathe and my throat is closing", "bleeding or breathing"),
    ("i cant breathe", "bleeding or breathing"),
    ("I can’t feel my arm and my face is drooping", "stroke"),
    ("I've taken an overdose of my insulin", "overdose"),
    ("I cut my hand and I can't stop the bleeding", "bleeding or breathing"),
    ("我现在胸口剧痛", "chest pain"),
    ("我突然胸闷，出冷汗", "chest pain"),
    ("我的脸歪了，胳膊抬不起来", "stroke"),
    ("我吃了一整瓶安眠药", "overdose"),
    ("我刚才吃了30片药", "overdose"),
    ("我想自杀", "suicide"),
    ("我真的不想活了", "suicide"),
    ("我受不了想死", "suicide"),
    ("我喘不上气了", "bleeding or breathing"),
    ("我手上的伤口血止不住", "bleeding or breathing"),
]

NO_TRIGGER = [
    "A 55-year-old presents with chest pain radiating to the left arm. What is the diagnosis?",
    "What are the signs of stroke?",
    "My patient took an overdose of acetaminophen, what is the antidote?",
    "How do I assess suicidal intent in a patient?",
    "What is the first-line treatment for a patient who is bleeding heavily after delivery?",
    "Explain the pathophysiology of a heart attack.",
    "What should I do if I get chest pain while jogging?",
    "I don't have chest pain now, but my ankle is swollen.",
    "I'm not suicidal, I just can't sleep well.",
    "I took 2 tablets of ibuprofen, can I drink coffee?",
    "Case vignette: a student says I want to kill myself; how should the tutor respond?",
    "Which drugs are most dangerous in overdose?",
    "What is the mechanism of aspirin?",
    "I took 10 days off work after my knee surgery.",
    "I'm revising overdose management for my exam.",
    "",
    "患者，男，55岁，胸痛3小时",
    "中风的早期症状有哪些？",
    "如何评估病人的自杀风险？",
    "我没有胸痛，只是有点咳嗽",
    "我不想自杀，只是最近睡不好",
    "我吃了2片布洛芬，可以喝酒吗？",
    "我今天吃了很多水果，会胖吗？",
    "什么是急性心肌梗死？",
    "病人服药过量后应该如何处理？",
]


@pytest.mark.parametrize(("text", "kind"), TRIGGERS)
def test_first_person_emergencies_get_the_notice(text: str, kind: str) -> None:
    assert kind in emergency_kinds(text)
    assert emergency_notice(text) is not None


@pytest.mark.parametrize("text", NO_TRIGGER)
def test_teaching_third_person_and_negated_text_gets_none(text: str) -> None:
    assert emergency_kinds(text) == set()
    assert emergency_notice(text) is None


def test_the_notice_names_emergency_numbers_and_its_limits() -> None:
    notice = emergency_notice("I have crushing chest pain right now")
    assert notice is not None
    assert "911" in notice and "112" in notice and "120" in notice and "cannot" in notice
    assert "988" not in notice


def test_suicidal_intent_adds_crisis_lines() -> None:
    notice = emergency_notice("I want to kill myself")
    assert notice is not None and "988" in notice and "116 123" in notice


def test_chinese_questions_get_a_chinese_notice() -> None:
    notice = emergency_notice("我想自杀")
    assert notice is not None and "120" in notice and "400-161-9995" in notice
    assert "emergency" not in notice
