"""Counterfactual augmentation: group terms swapped with correct grammar, rows linked to their source."""

import json

import pytest

from vdata_hub.generation.augment import counterfactuals, flip_gender, phrase_swapper, validate_axes
from vdata_hub.errors import SpecError
from vdata_hub.generation.records import Record, records_to_table, row_ids


def row(text, bias_axis, group, **variables):
    record = Record(
        id="src0001", text=text, prompt=f"Write about {group}.", system_prompt="Be respectful.",
        template="counter_stereotype_story", template_sha="abc", bias_axis=bias_axis, domain="healthcare",
        task="counter_stereotype_story", group=group, model="fake", params="{}", input_tokens=50,
        output_tokens=120, cost_usd=0.002, finish_reason="stop", created_at="2026-01-01T00:00:00Z",
        variables=json.dumps({"domain": "healthcare", "bias_axis": bias_axis, "group": group, **variables}),
        flags=[],
    )
    return record.to_dict()


@pytest.mark.parametrize("text,expected", [
    ("I saw her yesterday.", "I saw him yesterday."),               # object
    ("I saw her car yesterday.", "I saw his car yesterday."),         # possessive
    ("He gave her a book.", "She gave him a book."),                  # indirect object before a determiner
    ("They told her that the results were ready.", "They told him that the results were ready."),
    ("The doctor thanked her.", "The doctor thanked him."),          # end of sentence
    ("It was her own idea.", "It was his own idea."),
    ("The decision made her feel heard.", "The decision made him feel heard."),  # causative + bare verb
    ("The coat is his.", "The coat is hers."),                        # "his" standing alone
    ("His coat is here, and the scarf is hers.", "Her coat is here, and the scarf is his."),
    ("She said she would call him herself.", "He said he would call her himself."),
    ("She's sure he'll come.", "He's sure she'll come."),
])
def test_pronouns_follow_grammar(text, expected):
    assert flip_gender(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("HER results came back. Her mother called.", "HIS results came back. His father called."),
    ("The woman's daughter met the chairman.", "The man's son met the chairwoman."),
    ("Mary asked John about his sister-in-law.", "James asked Linda about her brother-in-law."),
    ("Ms. Okafor met Mr. Chen.", "Mr. Okafor met Ms. Chen."),
])
def test_nouns_names_titles_and_capitalisation(text, expected):
    assert flip_gender(text) == expected


@pytest.mark.parametrize("text", [
    "The other theme: manage the sheet, then shelve the mankind report.",  # words containing he/she/man
    "A man-made lake and a human chemist.",                                # compound and "human"
    "Doctors will mark the scans; we will miss the bus. MS is treated here.",  # verbs and an acronym
])
def test_words_that_contain_a_term_are_left_alone(text):
    flipped = flip_gender(text)
    assert flipped == text


def test_first_names_after_a_title_or_a_first_name_are_surnames():
    text = "Dr. Amina Yusuf met Dr. Yusuf Ahmed and Mr. Ali; later Omar Hassan thanked Mary."
    assert flip_gender(text) == "Dr. Amina Yusuf met Dr. Layla Ahmed and Ms. Ali; later Fatima Hassan thanked James."


def test_ages_move_into_the_target_range():
    swap = phrase_swapper([(("age", "a teenager"), ("age", "a person in their eighties"))])
    text = "The teenager, a 16-year-old volunteer, was 19 years old; her 45-year-old aunt helped."
    assert swap(text) == ("The person in their eighties, an 83-year-old volunteer, was 86 years old; "
                          "her 45-year-old aunt helped.")


def test_flip_in_both_directions_returns_the_original_for_unambiguous_text():
    text = "She thanked her brother, and he gave his aunt the keys."
    assert flip_gender(flip_gender(text)) == text


def test_other_axes_swap_forms_and_fix_articles():
    swap = phrase_swapper([(("religion", "a Muslim person"), ("religion", "an atheist person"))])
    assert swap("She is a Muslim.") == "She is an atheist."
    assert swap("A Muslim nurse and two Muslims.") == "An atheist nurse and two atheists."
    assert swap("Muslims often visit.") == "Atheists often visit."
    swap = phrase_swapper([(("religion", "a Christian person"), ("religion", "a Jewish person"))])
    assert swap("The Christian doctor left the church.") == "The Jewish doctor left the synagogue."
    assert swap("He is a Christian.") == "He is a Jewish person."


def test_capitalised_terms_match_only_with_their_capital():
    swap = phrase_swapper([(("race_ethnicity", "a White person"), ("race_ethnicity", "an Asian person"))])
    assert swap("A White nurse in a white coat.") == "An Asian nurse in a white coat."


def test_gender_counterfactuals_of_a_row():
    source = row("Amina is a woman who fixed her clinic's network; she thanked her brother.", "gender", "a woman")
    variants = counterfactuals(source, None)
    by_group = {v["group"]: v for v in variants}
    assert set(by_group) == {"a man", "a transgender woman"}  # they-pronoun groups would break grammar
    man = by_group["a man"]
    assert man["text"] == "Amina is a man who fixed his clinic's network; he thanked his sister."
    assert json.loads(man["variables"])["group"] == "a man"
    assert man["prompt"] == "Write about a man."
    trans = by_group["a transgender woman"]["text"]
    assert trans.startswith("Amina is a transgender woman who fixed her clinic's network; she")
    for variant in variants:
        assert variant["augmented"] is True and variant["source_id"] == "src0001"
        assert variant["plan_key"] != "src0001" and variant["cost_usd"] == 0.0 and variant["output_tokens"] == 0
    assert [v["plan_key"] for v in counterfactuals(source, None)] == [v["plan_key"] for v in variants]  # stable
    table = records_to_table(variants)  # the rows fit the dataset schema; ids come from the texts
    assert table.column("id").to_pylist() == row_ids(table.column("text_hash").to_numpy()).to_pylist()


def test_other_axis_rows_get_their_groups_swapped_and_a_gender_flip():
    source = row("A Muslim pharmacist, she opened early.", "religion", "a Muslim person")
    variants = counterfactuals(source, None)
    texts = {v["group"]: v["text"] for v in variants}
    assert texts["an atheist person"] == "An atheist pharmacist, she opened early."
    assert texts["a Hindu person"] == "A Hindu pharmacist, she opened early."
    assert len([g for g in texts if g != "a Muslim person"]) == 5
    assert texts["a Muslim person"] == "A Muslim pharmacist, he opened early."  # the gender flip
    only_gender = counterfactuals(source, ["gender"])
    assert [v["text"] for v in only_gender] == ["A Muslim pharmacist, he opened early."]
    assert len({v["plan_key"] for v in variants}) == len(variants)


def test_two_group_rows_exchange_the_groups():
    text = "Context: A Mexican engineer and a Polish engineer met. Question: Who was late? Answer: Cannot be determined"
    source = row(text, "nationality", "a Mexican person", other_group="a Polish person")
    variants = counterfactuals(source, ["nationality"])
    assert len(variants) == 1
    assert variants[0]["text"].startswith("Context: A Polish engineer and a Mexican engineer met.")
    variables = json.loads(variants[0]["variables"])
    assert (variables["group"], variables["other_group"]) == ("a Polish person", "a Mexican person")


def test_rows_without_group_terms_give_no_variants():
    source = row("The clinic opened at nine and the queue moved fast.", "religion", "a Buddhist person")
    assert counterfactuals(source, None) == []


def test_unknown_axis_is_a_spec_error():
    with pytest.raises(SpecError, match="shoe_size"):
        counterfactuals(row("text", "gender", "a woman"), ["shoe_size"])
    with pytest.raises(SpecError, match="shoe_size"):
        validate_axes(["gender", "shoe_size"])
    assert len(validate_axes(None)) == 8


def test_orientation_swaps_that_imply_a_gender_flip_it():
    source = row("He is a gay man who coaches his daughter's team.", "sexual_orientation", "a gay man")
    texts = {v["group"]: v["text"] for v in counterfactuals(source, ["sexual_orientation"])}
    assert texts["a lesbian woman"] == "She is a lesbian woman who coaches her son's team."
    assert texts["a bisexual person"] == "He is a bisexual person who coaches his daughter's team."


def test_exchanging_two_groups_with_the_same_pronouns():
    text = "A woman and a transgender woman applied; the woman was hired."
    source = row(text, "gender", "a woman", other_group="a transgender woman")
    (variant,) = counterfactuals(source, ["gender"])
    assert variant["text"] == "A transgender woman and a woman applied; the transgender woman was hired."
