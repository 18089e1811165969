"""Counterfactual augmentation: copies of a generated row with the group terms swapped.

A model trained on "she is a nurse" and "he is a nurse" alike learns less of the association between
gender and job. For a row about one group, `counterfactuals()` writes the same text about each other
group of its bias axis (and, for rows of other axes, a gender-flipped copy), as extra rows marked
`augmented=True` and linked to their source row by `source_id` (the source's id); a variant's own id
comes from its text when the dataset is built, its plan key from the source's and the swap.

Rules (data in templates/data/groups.yaml and templates/data/swaps.yaml):
- Whole words only: a word that contains a term ("other", "manage", "sheet") and a hyphenated
  compound ("man-made") are left alone unless the compound itself is listed.
- Gender between "she" and "he" groups flips every gendered word: pronouns (with "her" as object ->
  "him" and as possessive -> "his", "his" before a noun -> "her" and standing alone -> "hers"),
  nouns (woman, mother, chairman...), titles and listed first names, keeping the case (a listed
  name after a title or another name, as in "Dr. Yusuf" or "Amina Yusuf", is a surname and stays).
  Between groups with the same pronouns (woman <-> transgender woman, nonbinary <-> genderqueer)
  only the group nouns change; a swap that would need "they" <-> "she"/"he" (and so verb agreement,
  "she is" -> "they are") is not generated.
- Other axes: each group's terms per grammatical form (noun, plural, adjective, place, country) are
  swapped for the same form of the target group, and "a"/"an" before them is corrected. A word used
  as both noun and adjective ("Muslim") is read as an adjective when a noun follows it. Groups
  that imply pronouns (a gay man: he, a lesbian woman: she) also get the gender flip between them.
- Ages ("16-year-old", "16 years old") move into the target group's age range.
- A row with two groups (`other_group`, e.g. ambiguous questions) gets one variant exchanging them.
- Rows of another axis get only the gender flip (when `gender` is among the axes); group terms of
  a third axis are not detected.
Augmented rows cost nothing: their token counts and cost are 0 so totals are not double-counted.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Optional

import yaml

from vdata_hub.errors import SpecError
from vdata_hub.generation.groups import load_axes as _groups_data
from vdata_hub.generation.records import plan_key_of, same_text
from vdata_hub.generation.spec import canonical_json
from vdata_hub.resources import TEMPLATE_DATA_DIR

WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
AGE_NUMBER = re.compile(r"(?<![\w.-])\d{1,3}(?=(?:-| )years?(?:-| )olds?\b)")
SWAPPED_FORMS = ("noun", "plural", "adj", "place", "places", "country")
# Words that follow an object pronoun rather than the noun of a possessive: "gave her a book",
# "told her that", "saw her again", "with her and".
FOLLOWS_OBJECT = set("""
a an the this that these those some any no every each all both either neither such what which whose
to and or but nor so yet for with about at by from in into on onto of off out over up down through
as if when while because before after since until till than then now here there again too also
back away today yesterday tomorrow tonight later soon once twice very really not never always
how why where who whom whether around across along during like unlike without within toward towards
i you he she it we they me him us them my your his its our their one two three four five six seven
eight nine ten is was are were be been being has have had do does did will would can could shall
should may might must
""".split())
# "made her feel", "let her go": after these verbs "her" is an object when a bare verb follows.
CAUSATIVE = set("let lets letting make makes made making help helps helped helping watch watched watching "
                "hear heard hearing see saw seen seeing bid".split())
BARE_VERBS = set("""
feel go come do make take get know see think try stay leave work speak talk finish learn understand
decide wait sit stand walk run smile laugh cry sing win lose choose start stop study read write
rest sleep eat drink join lead move open pay play pass practise practice prepare recover return
""".split())


@dataclass(frozen=True)
class Swap:
    """One way to turn a row about `group` into a row about `target` (or a gender flip)."""

    axis: str
    target: str  # the new group, or "flip" for the gender flip of a row of another axis
    rewrite: Callable[[str], str]
    variables: dict  # new values for group / other_group


@lru_cache(maxsize=1)
def _gender_words() -> tuple[dict, dict]:
    """(lower-case word -> word, capitalised name -> name), both directions, from swaps.yaml."""
    data = yaml.safe_load((TEMPLATE_DATA_DIR / "swaps.yaml").read_text(encoding="utf-8"))["gender"]
    words = {}
    for male, female in data["pairs"]:
        words[male.lower()] = female.lower()
        words[female.lower()] = male.lower()
    for source, target in data["one_way"].items():
        words[source.lower()] = target.lower()
    names = {}
    for male, female in data["names"]:
        names[male] = female
        names[female] = male
    return words, names


def swappable_axes() -> list[str]:
    """Axes with swap rules: every axis of groups.yaml whose groups list their terms."""
    return [axis for axis, entry in _groups_data().items() if entry.get("terms")]


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _match_case(original: str, target: str, proper_target: bool, capitalise: bool) -> str:
    if len(original) > 1 and original.isupper():
        return target.upper()
    if proper_target:
        return target
    if capitalise and original[:1].isupper():
        return target[:1].upper() + target[1:]
    return target


TITLE = re.compile(r"(?:\b(?:Dr|Mr|Mrs|Ms|Mx|Prof|Professor|Miss)\.?|[A-Z][\w'’-]*)[ \t]+$")


def _at_sentence_start(text: str, start: int) -> bool:
    before = text[max(0, start - 40):start].rstrip(" \t\"'“‘(")
    if not before:
        return start <= 40 or not text[:start].strip()
    return before[-1] in ".!?:\n" and not re.search(r"\b(?:Dr|Mr|Mrs|Ms|Mx|Prof)\.$", before)


def _after_name_or_title(text: str, start: int) -> bool:
    """A capitalised word after a title or another name ("Dr. Yusuf", "Amina Yusuf") is a surname."""
    window = text[max(0, start - 40):start]
    match = TITLE.search(window)
    if not match:
        return False
    if re.match(r"(?:Dr|Mr|Mrs|Ms|Mx|Prof|Professor|Miss)\b", match.group()):
        return True
    return not _at_sentence_start(text, max(0, start - 40) + match.start())


def _neighbours(text: str, start: int, end: int) -> tuple[str, str]:
    """The words right before and after text[start:end] when only spaces separate them ("" otherwise)."""
    rest = text[end:end + 60]
    after = WORD.match(rest, len(rest) - len(rest.lstrip(" \t")))
    before = re.search(r"([^\W\d_]+)[ \t]+$", text[max(0, start - 60):start])
    return (before.group(1) if before else ""), (after.group() if after else "")


def _noun_follows(next_word: str) -> bool:
    return bool(next_word) and next_word.lower() not in FOLLOWS_OBJECT


def _fix_article(pieces: list[str], replacement: str) -> None:
    """Correct "a"/"an" at the end of the text written so far for the word that follows it."""
    if not pieces:
        return
    match = re.search(r"(?<![\w-])(a|an|A|An|AN)(\s+)$", pieces[-1])
    if not match:
        return
    vowel = bool(re.match(r"(?i)(?!uni|use|eu|one\b)[aeiou]|hour|honest|heir|8|1[18](?!\d)", replacement))
    article = match.group(1)
    new = ("an" if vowel else "a")
    new = new.upper() if article.isupper() and len(article) > 1 else (new.capitalize() if article[0].isupper() else new)
    pieces[-1] = pieces[-1][: match.start(1)] + new + match.group(2)


def _rewrite(text: str, pattern: re.Pattern, choose: Callable[[str, re.Match], Optional[str]]) -> str:
    """Replace each match of `pattern` by choose(text, match), unless it returns None."""
    pieces, last = [], 0
    for match in pattern.finditer(text):
        replacement = choose(text, match)
        if replacement is None or replacement == match.group():
            continue
        pieces.append(text[last:match.start()])
        _fix_article(pieces, replacement)
        pieces.append(replacement)
        last = match.end()
    pieces.append(text[last:])
    return "".join(pieces)


@lru_cache(maxsize=1)
def _gender_candidates() -> frozenset:
    words, names = _gender_words()
    return frozenset(set(words) | {n.lower() for n in names} | {"he", "she", "him", "her", "his", "hers", "himself", "herself"})


def _gender_word(text: str, match: re.Match) -> Optional[str]:
    word = match.group()
    base, suffix = _split_word(word) if ("'" in word or "’" in word) else (word, "")
    lower = base.lower()
    if lower not in _gender_candidates():
        return None
    words, names = _gender_words()
    prev, next_word = _neighbours(text, match.start(), match.end())
    if lower == "her":
        is_object = not _noun_follows(next_word) or (prev.lower() in CAUSATIVE and next_word.lower() in BARE_VERBS)
        target = "him" if is_object else "his"
    elif lower == "his":
        target = "her" if _noun_follows(next_word) else "hers"
    elif lower in ("he", "she", "him", "hers", "himself", "herself"):
        target = {"he": "she", "she": "he", "him": "her", "hers": "his", "himself": "herself", "herself": "himself"}[lower]
    elif base in names:
        surname = _after_name_or_title(text, match.start()) and not next_word[:1].isupper()
        return None if surname else names[base] + suffix
    elif lower in names and base not in names:
        return None  # "mei" or "ali" in lower case are not the names
    elif lower in ("mr", "ms", "mrs") and not (base[:1].isupper() and base[1:].islower()):
        return None  # "MS" (multiple sclerosis), "ms" (milliseconds)
    elif lower == "miss" and not (base == "Miss" and next_word[:1].isupper()):
        return None  # the verb
    elif lower in words:
        target = words[lower]
    else:
        return None
    return _match_case(base, target, False, True) + suffix


def _split_word(word: str) -> tuple[str, str]:
    """"woman's" -> ("woman", "'s")."""
    cut = min((i for i in (word.find("'"), word.find("’")) if i >= 0), default=len(word))
    return word[:cut], word[cut:]


def flip_gender(text: str) -> str:
    """Every gendered word swapped between its male and female form, with grammar for the common cases."""
    return _rewrite(text, WORD, _gender_word)  # every word, looked up: faster than a regex of all terms


def _term_pattern(terms) -> re.Pattern:
    alternatives = sorted({t for t in terms}, key=len, reverse=True)
    body = "|".join(re.escape(t) for t in alternatives)
    return re.compile(rf"(?<![\w'’-])(?:{body})(?![\w-])", re.IGNORECASE)


def _group_terms(axis: str, group: str) -> dict[str, list]:
    entry = _groups_data()[axis].get("terms", {}).get(group) or {}
    return {form: (words if form == "ages" else _as_list(words)) for form, words in entry.items()}


def _age_swapper(ranges: list[tuple[list, list]]) -> Callable[[str], str]:
    """Move ages ("16-year-old", "16 years old") from each source range into the target range."""

    def choose(text: str, match: re.Match) -> Optional[str]:
        age = int(match.group())
        for (low, high), (target_low, target_high) in ranges:
            if low <= age <= high:
                return str(target_low + (age - low) % (target_high - target_low + 1))
        return None

    return lambda text: _rewrite(text, AGE_NUMBER, choose) if ranges else text


def phrase_swapper(pairs: list[tuple[tuple[str, str], tuple[str, str]]]) -> Callable[[str], str]:
    """A rewrite function swapping group terms for pairs ((axis, source group), (axis, target group)),
    all applied in one pass (so an exchange A <-> B works)."""
    return _phrase_swapper(tuple((tuple(source), tuple(target)) for source, target in pairs))


@lru_cache(maxsize=1024)
def _phrase_swapper(pairs: tuple) -> Callable[[str], str]:
    table: dict[str, dict[str, str]] = {}  # lower-case source term -> form -> target term
    proper: dict[str, str] = {}  # lower-case source term -> its spelling when it is a proper noun/adjective
    ages = []
    for (axis, source), (_, target) in pairs:
        source_terms, target_terms = _group_terms(axis, source), _group_terms(axis, target)
        for form in SWAPPED_FORMS:
            if form in source_terms and form in target_terms:
                for term in source_terms[form]:
                    table.setdefault(term.lower(), {})[form] = target_terms[form][0]
                    if term != term.lower():
                        proper[term.lower()] = term
        if "ages" in source_terms and "ages" in target_terms:
            ages.append((source_terms["ages"], target_terms["ages"]))
    move_ages = _age_swapper(ages)
    if not table:
        return move_ages
    pattern = _term_pattern(table)

    def choose(text: str, match: re.Match) -> Optional[str]:
        word, key = match.group(), match.group().lower()
        if key in proper and word != proper[key] and not (len(word) > 1 and word.isupper()):
            return None  # "white coat" is not "White"
        forms = table[key]
        if "adj" in forms and len(forms) > 1:
            next_word = _neighbours(text, match.start(), match.end())[1]
            form = "adj" if _noun_follows(next_word) else next(f for f in forms if f != "adj")
        else:
            form = next(iter(forms))
        target = forms[form]
        capitalise = key not in proper or _at_sentence_start(text, match.start())
        return _match_case(word, target, target != target.lower(), capitalise)

    return lambda text: move_ages(_rewrite(text, pattern, choose))


def _pronouns(axis: str, group: str) -> Optional[str]:
    """she, he or they for groups that imply them (groups.yaml `pronouns`), else None."""
    return (_groups_data()[axis].get("pronouns") or {}).get(group)


def _group_swap(axis: str, source: str, target: str, exchange: bool) -> Optional[Callable[[str], str]]:
    """How to rewrite a text about `source` into one about `target` (both ways with `exchange`), or
    None when grammar forbids it."""
    pairs = [((axis, source), (axis, target))] + ([((axis, target), (axis, source))] if exchange else [])
    swap_terms = phrase_swapper(pairs)
    mine, theirs = _pronouns(axis, source), _pronouns(axis, target)
    if mine is None or theirs is None or mine == theirs:
        return swap_terms
    if {mine, theirs} != {"she", "he"}:
        return None  # "they" <-> "she"/"he" would need verb agreement ("she is" -> "they are")
    if axis == "gender":  # woman <-> man, transgender woman <-> transgender man: the flip says it all
        return flip_gender if flip_gender(source) == target else None
    # "a gay man ... he" -> flip -> "a gay woman ... she" -> terms -> "a lesbian woman ... she"
    return lambda text: swap_terms(flip_gender(text))


def _swaps_for(record: dict, variables: dict, axes: list[str]) -> list[Swap]:
    axis, group = record.get("bias_axis", ""), record.get("group", "")
    groups = _groups_data().get(axis, {}).get("groups", [])
    swaps = []
    if axis in axes and group in groups:
        other = variables.get("other_group")
        if other in groups and other != group:
            rewrite = _group_swap(axis, group, other, exchange=True)
            if rewrite:
                swaps.append(Swap(axis, other, rewrite, {"group": other, "other_group": group}))
        else:
            for target in groups:
                rewrite = _group_swap(axis, group, target, exchange=False) if target != group else None
                if rewrite:
                    swaps.append(Swap(axis, target, rewrite, {"group": target}))
    if "gender" in axes and axis != "gender":
        flipped = {name: flip_gender(str(variables[name])) for name in ("group", "other_group") if name in variables}
        swaps.append(Swap("gender", "flip", flip_gender, flipped))
    return swaps


def validate_axes(axes: list[str] | None) -> list[str]:
    """The axes to swap (None: all with swap rules); SpecError for an unknown one, so a run can check
    `augment.axes` before it calls any model."""
    known = swappable_axes()
    wanted = known if axes is None else list(axes)
    unknown = [axis for axis in wanted if axis not in known]
    if unknown:
        raise SpecError(f"augment.axes: unknown axis {unknown[0]!r} (axes with swap rules: {', '.join(known)})")
    return wanted


def counterfactual_id(source_id: str, axis: str, target: str) -> str:
    """Stable id of a variant: the same source row and swap always give the same id."""
    key = json.dumps(["counterfactual", source_id, axis, target], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def counterfactuals(record: dict, axes: list[str] | None = None) -> list[dict]:
    """Augmented copies of `record` (a Record as a dict) with group terms swapped.

    `axes`: the axes to swap (None: every axis with swap rules). Variants whose text would not
    change are not returned.
    """
    wanted = validate_axes(axes)
    raw_variables = record.get("variables") or {}
    variables = json.loads(raw_variables) if isinstance(raw_variables, str) else dict(raw_variables)
    rows = []
    for swap in _swaps_for(record, variables, wanted):
        text = swap.rewrite(record["text"])
        if same_text(text, record["text"]):  # a variant validation would call a duplicate
            continue
        new_variables = {**variables, **swap.variables}
        rows.append({
            **record,
            "id": "",  # from the new text's hash, when the dataset is built
            "plan_key": counterfactual_id(plan_key_of(record), swap.axis, swap.target),
            "text": text,
            "prompt": swap.rewrite(record.get("prompt", "")),
            "variables": canonical_json(new_variables) if isinstance(raw_variables, str) else new_variables,
            "group": str(new_variables.get("group", record.get("group", ""))),
            "augmented": True,
            "source_id": record["id"],
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
            "flags": list(record.get("flags") or []),
            "text_hash": 0,  # recomputed from the new text
        })
    return rows
