"""An urgent notice, shown before the answer, when an asker describes their own emergency.

This is a keyword heuristic, not a classifier. The text is cut into sentences; a sentence counts
when it speaks in the first person ("I", "my", "我"), names an emergency of one of the kinds below
(chest pain now, stroke signs, overdose, suicidal intent, severe bleeding or not breathing), and
has no guard: no teaching or case marker ("patient", "presents with", "how do I assess", "患者",
"病例") and no negation just before the emergency words ("I don't have chest pain", "我没有胸痛").
Chest pain needs a sign that it is happening now ("right now", "crushing", "现在", "剧痛").

Limits: it reads English and Chinese only; it misses emergencies put in other words, those of
someone else ("my husband can't breathe") and first-person ones in a teaching sentence ("as a
patient, ..."); it may fire on a first-person past event told in the present tense. A false alarm
costs a notice above a normal answer; a miss costs nothing the bot did not already lack. It never
stops the model from answering.
"""

from __future__ import annotations

import re

EmergencyKind = str

_PILLS = r"(\w+ ){0,2}(pills|tablets|capsules|meds|medications?|medicines?|painkillers)"
_EN_PATTERNS: dict[EmergencyKind, str] = {
    "chest pain": r"chest (pain|pressure|tightness)|chest (hurts|is (tight|hurting))"
    r"|heart attack|pain in my chest",
    "stroke": r"face (is |keeps )?(droop|drooping|numb)"
    r"|(cant|cannot|can not) (lift|move|raise|feel) my (arm|leg|hand)|slurr(ed|ing)"
    r"|(cant|cannot) (speak|talk) (properly|clearly|right)"
    r"|(numb|weak|paralys\w*) on one side|one side of my (body|face)|having a stroke",
    "overdose": r"overdos(ed|ing)|(took|taken|had) an overdose"
    r"|(took|taken|swallowed) (\d{2,}|too many|a lot of|all (of )?my)"
    rf" {_PILLS}|(took|swallowed) (a|an|the) (whole|entire) (bottle|pack|box) of",
    "suicide": r"kill myself|end (my|my own) life|end it all|take my (own )?life|suicidal"
    r"|want to die|(dont|do not) want to (live|be alive|wake up)|better off dead|hurt myself",
    "bleeding or breathing": r"(cant|cannot|can not|unable to|struggling to) (breathe|breath)"
    r"|cant catch my breath|throat is (closing|swelling)|bleeding (heavily|badly|a lot|wont stop"
    r"|everywhere)|(cant|cannot) stop (the )?bleeding|losing a lot of blood|choking",
}
_ZH_PATTERNS: dict[EmergencyKind, str] = {
    "chest pain": r"胸(口|部)?(剧痛|痛|疼|闷|压榨)|心脏病发作|心梗",
    "stroke": r"(脸|嘴|口角)(歪|下垂|麻)|(手臂|胳膊|腿|手)(抬不起|动不了|没力气|没有力气)"
    r"|说话(不清|含糊)|口齿不清|半边(身体|脸)?(麻|没知觉|动不了)|中风了",
    "overdose": r"(吃|吞)了(\d{2,}|几十|十几|好多|很多|一大把)(片|粒|颗)|(吃|吞)了(一整|整)瓶"
    r"|服药过量|过量服用|药吃多了",
    "suicide": r"自杀|想死|不想活|结束(我的)?生命|轻生|割腕|活不下去",
    "bleeding or breathing": r"喘不(上|过)气|呼吸困难|(无法|不能|没法)呼吸|血止不住|止不住血"
    r"|大出血|流了(很多|好多)血|窒息",
}
_KINDS = {
    kind: re.compile(f"{_EN_PATTERNS[kind]}|{_ZH_PATTERNS[kind]}", re.IGNORECASE)
    for kind in _EN_PATTERNS
}
_FIRST_PERSON = re.compile(r"\b(i|im|ive|id|me|my|myself)\b|我(?!们)", re.IGNORECASE)
_GUARD = re.compile(
    r"\b(patients?|pt|client|\d+[- ]year[- ]old|presents?|presented|presenting|vignette|students?"
    r"|exam|quiz|signs of|symptoms of|what (is|are) the|assess\w*|evaluat\w*|screen\w* for)\b"
    r"|患者|病人|病例|病患|如何(评估|判断|处理)|怎么(评估|判断|处理|鉴别)|什么是|有哪些|考试|学生",
    re.IGNORECASE,
)
_NEGATED = re.compile(
    r"(\b(no|not|never|without|dont have|do not have|havent|hasnt|denies|deny)\b[\w\s]{0,12}"
    r"|[没不无未](有|想|会|是|再)?)$",
    re.IGNORECASE,
)
_NOW = re.compile(
    r"\b(now|currently|at the moment|crushing|severe|sudden\w*|radiat\w*|spreading|started"
    r"|minutes|hours?|sweating|having)\b|现在|正在|突然|剧|刚才|压榨|放射|出汗|一直",
    re.IGNORECASE,
)
_SENTENCES = re.compile(r"[.!?。！？\n;；]+")
_CJK = re.compile(r"[\u4e00-\u9fff]")

_NOTICE_EN = (
    "**This may be an emergency.** If you are in danger now, call your local emergency number "
    "(911 in the US and Canada, 112 in the EU, 999 in the UK, 000 in Australia, 120 in China) "
    "or go to the nearest emergency department. Do not wait for this bot: it cannot call for "
    "help or examine you, and its answer is not emergency care."
)
_CRISIS_EN = (
    "If you are thinking about ending your life, please reach out now: call or text **988** "
    "(US), call **116 123** (Samaritans, UK and Ireland), or find a line near you at "
    "https://findahelpline.com. You are not alone."
)
_NOTICE_ZH = (
    "**这可能是紧急情况。** 如果你现在有危险，请立即拨打当地急救电话（中国大陆 **120**，"
    "美国 911，欧盟 112，英国 999）或前往最近的急诊。不要等待本机器人：它无法替你呼救，"
    "也无法为你检查，它的回答不是急救。"
)
_CRISIS_ZH = (
    "如果你有结束生命的想法，请现在就联系：希望24热线 **400-161-9995**，"
    "北京心理危机研究与干预中心 **010-82951332**（美国 988）。你并不孤单。"
)


def emergency_kinds(text: str) -> set[EmergencyKind]:
    """The kinds of personal emergency the asker describes in the first person (often none)."""
    found: set[EmergencyKind] = set()
    for sentence in _SENTENCES.split(re.sub("['’]", "", text)):  # "can’t", "can't": "cant"
        if not _FIRST_PERSON.search(sentence) or _GUARD.search(sentence):
            continue
        for kind, pattern in _KINDS.items():
            for match in pattern.finditer(sentence):
                if _NEGATED.search(sentence[: match.start()]):
                    continue
                if kind != "chest pain" or _NOW.search(sentence):
                    found.add(kind)
    return found


def emergency_notice(text: str) -> str | None:
    """The urgent notice (Markdown, in the asker's language) for `text`, or None."""
    kinds = emergency_kinds(text)
    if not kinds:
        return None
    chinese = bool(_CJK.search(text))
    notice = _NOTICE_ZH if chinese else _NOTICE_EN
    if "suicide" in kinds:
        notice += "\n\n" + (_CRISIS_ZH if chinese else _CRISIS_EN)
    return notice
