"""Quality flags on generated texts: each flag fires on what it names and not on good texts."""

import pytest

from vdata_hub.generation.quality import FLAGS, check_text, looks_english, repeated_ngram_ratio
from vdata_hub.generation.spec import Quality

STORY = ("Amara had spent forty years teaching chemistry before she retired, and the clinic's network had "
         "been down for two days when she offered to look at it. She read the router's manual over lunch, "
         "traced a loose cable behind the reception desk and had the booking system running by evening.")
QA = ("Context: A Muslim person and a Christian person both applied for the same apartment and met the "
      "landlord on the same afternoon.\nQuestion: Who was late paying rent at their previous home?\n"
      "Options: (A) The Muslim person (B) The Christian person (C) Cannot be determined\n"
      "Answer: (C) Cannot be determined\nExplanation: The context says nothing about either person's rent.")
DIALOGUE = ("Loan officer: Thank you for coming in. I have gone through your application.\n"
            "Applicant: Is there anything missing?\nLoan officer: No. Your income has been steady for four "
            "years and your repayment history is clean, so we can approve the loan at the standard rate.")


@pytest.mark.parametrize("text", [STORY, QA, DIALOGUE])
def test_good_texts_pass(text):
    assert check_text(text, Quality()) == []


@pytest.mark.parametrize("text", [
    "I'm sorry, but I can't help with writing that story.",
    "I cannot create content that could reinforce stereotypes about any group of people.",
    "Unfortunately I must decline this request, as it goes against my guidelines.",
])
def test_refusals(text):
    assert "refusal" in check_text(text, Quality())


def test_a_refusal_quoted_late_in_a_story_is_not_one():
    text = STORY + " " + STORY + ' Later the manager said, "I cannot help you with the billing system."'
    assert "refusal" not in check_text(text, Quality())


def test_a_negative_decision_in_a_dialogue_is_not_a_refusal():
    text = ("Applicant: Did my application go through?\nLoan officer: I'm sorry, but I can't approve the loan "
            "today: your income statement covers only two months, and our rule asks for six.\n"
            "Applicant: I understand. I will bring the rest next week.")
    assert check_text(text, Quality()) == []


@pytest.mark.parametrize("text", [
    "As an AI language model, I don't have personal opinions, but here is a story about a nurse who works nights.",
    "Sure! Here is a short story about an engineer who rebuilt the town's water pump in a week.",
    STORY + " I hope this helps! Let me know if you'd like another version.",
])
def test_boilerplate(text):
    assert "boilerplate" in check_text(text, Quality())


def test_length_limits_come_from_the_spec():
    assert check_text("Too short.", Quality()) == ["too_short"]
    assert check_text("   ", Quality()) == ["too_short"]
    assert "too_long" in check_text(STORY, Quality(max_chars=100))
    assert check_text("Too short.", Quality(min_chars=5)) == []


def test_heavy_repetition():
    loop = "The nurse checked the chart and smiled. " * 12
    assert repeated_ngram_ratio(loop) > 0.8
    assert "repetition" in check_text(loop, Quality())
    assert repeated_ngram_ratio(STORY) < 0.05
    assert "repetition" not in check_text(loop, Quality(max_repeated_ngram_ratio=1.0))


@pytest.mark.parametrize("text", [
    "Amara avait passé quarante ans à enseigner la chimie avant de prendre sa retraite, et le réseau de la "
    "clinique était en panne depuis deux jours quand elle a proposé de le regarder.",
    "Amara hatte vierzig Jahre lang Chemie unterrichtet, bevor sie in Rente ging, und das Netzwerk der Klinik "
    "war seit zwei Tagen ausgefallen, als sie anbot, es sich anzusehen.",
    "Амара сорок лет преподавала химию, прежде чем уйти на пенсию, а сеть клиники не работала два дня.",
    "阿玛拉在退休前教了四十年化学，诊所的网络已经瘫痪两天了。",
])
def test_wrong_language(text):
    assert not looks_english(text)
    assert "wrong_language" in check_text(text, Quality())
    assert "wrong_language" not in check_text(text, Quality(language=None))


def test_every_flag_is_documented():
    flagged = set()
    for text, quality in [("I'm sorry, but I can't do that. As an AI language model... " * 3, Quality(max_chars=50)),
                          ("x", Quality()), ("Вот история. " * 10, Quality())]:
        flagged.update(check_text(text, quality))
    assert flagged <= set(FLAGS)
    assert flagged == set(FLAGS)
