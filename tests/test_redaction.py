"""Redaction of identifiers before text goes to a remote engine; clinical content is kept."""

from __future__ import annotations

import pytest

from bot.config import Settings
from bot.core.redaction import redact
from bot.wiring import make_service
from inference.scripted import ScriptedEngine

REDACTED = [
    ("Email me at jane.doe+work@example.org please", "Email me at [EMAIL] please"),
    ("Call 555-123-4567 after 5 pm", "Call [PHONE] after 5 pm"),
    ("Her number is (555) 123-4567.", "Her number is [PHONE]."),
    ("Reach him on +44 20 7946 0958", "Reach him on [PHONE]"),
    ("家属电话13812345678", "家属电话[PHONE]"),
    ("MRN: 00123456, admitted for sepsis", "MRN: [MRN], admitted for sepsis"),
    ("medical record number A12-3456 shows", "medical record number [MRN] shows"),
    ("病历号：ZY20230001，诊断肺炎", "病历号：[MRN]，诊断肺炎"),
    ("DOB 03/04/1968, type 2 diabetes", "DOB [DOB], type 2 diabetes"),
    ("She was born on March 4, 1968.", "She was born on [DOB]."),
    ("date of birth: 1968-03-04", "date of birth: [DOB]"),
    ("出生日期：1968年3月4日，高血压", "出生日期：[DOB]，高血压"),
    ("patient John Smith has a fever", "patient [NAME] has a fever"),
    ("Patient Maria presents with cough", "Patient [NAME] presents with cough"),
    ("Mr. Chen and Mrs Lopez-Garcia were seen", "Mr. [NAME] and Mrs [NAME] were seen"),
    ("Name: Ana Silva, 34F", "Name: [NAME], 34F"),
    ("姓名：张三，男", "姓名：[NAME]，男"),
]

KEPT = [
    "Metformin 500 mg twice daily, max 2,000 mg per day",
    "A 55-year-old man with BP 120/80 mmHg and HR 72",
    "Potassium 3.5-5.0 mmol/L; sodium 135-145 mmol/L",
    "Hb 12.5 13.0 14.2 11.8 over four weeks",
    "Platelets 150,000-400,000 per microlitre",
    "Guidelines from 2019-2023 recommend statins",
    "The patient presents with chest pain since 2021",
    "患者，男，55岁，胸痛3小时，血压150/95 mmHg",
    "Give 0.9% saline 1000 mL over 4 hours",
    "ICD-10 code I21.9, troponin 0.04 ng/mL",
]


@pytest.mark.parametrize(("text", "expected"), REDACTED)
def test_identifiers_are_replaced(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", KEPT)
def test_clinical_content_is_kept(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("backend", "setting", "redacted"),
    [("openai", "true", True), ("openai", "false", False), ("local", "true", False)],
)
def test_only_a_remote_engine_gets_redacted_text(backend, setting, redacted, monkeypatch) -> None:
    monkeypatch.setenv("HUATUO_REDACT_PHI", setting)
    settings = Settings(_env_file=None, backend=backend)
    assert make_service(settings, ScriptedEngine()).redact_phi is redacted
