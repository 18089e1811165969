"""Quality filters for generated texts: each flag is a short reason a row may not be worth training on.

`check_text()` runs on every reply at generation time (flagged rows are dropped or kept with their
flags, as the spec says) and again when a dataset is validated or summarised. Flags:

- refusal: the model declined: the reply opens with "I'm sorry, but I can't ...", "I cannot help
  with ..." and the like, or says "against my guidelines" within its first 300 characters (a
  character saying "I'm sorry, but I can't approve the loan" later in a dialogue is not a refusal).
- boilerplate: assistant chatter that is not the requested text ("As an AI language model",
  "Sure! Here is ...", "I hope this helps").
- too_short / too_long: fewer than `min_chars` or more than `max_chars` characters (after stripping).
- repetition: the share of repeated word trigrams (1 - distinct/total) is above
  `max_repeated_ngram_ratio`; small models stuck in a loop score near 1, ordinary prose below 0.1.
- wrong_language: only checked for language "en". A dependency-free heuristic: the text is not
  English when under 80% of its letters are ASCII (another script), or when it has at least 12
  words and under 15% of them are common English function words (ordinary English prose has
  about 40-50%; French, Spanish or German prose has under 10% of these words). Other languages are
  not checked.
"""

from __future__ import annotations

import re

from vdata_hub.generation.spec import Quality

FLAGS = {
    "refusal": "the model refused",
    "boilerplate": "assistant boilerplate instead of the requested text",
    "too_short": "shorter than quality.min_chars",
    "too_long": "longer than quality.max_chars",
    "repetition": "heavy repetition of word trigrams",
    "wrong_language": "not in the spec's language",
}

# A refusal opens the reply; later in a text "I'm sorry, but I can't approve the loan" is dialogue.
REFUSAL_OPENING = re.compile(
    r"\A[\s\"'*]*(?:(?:unfortunately|sorry|apologies)[,!.]?\s*)?"
    r"(?:(?:I(?:'m| am) (?:sorry|afraid)|I apologi[sz]e),? (?:but )?I (?:can(?:'|no)t|cannot|won'?t|am unable|'m unable|am not able|must decline)"
    r"|I (?:can(?:'|no)t|cannot|won'?t|will not|am unable to|'m unable to|am not able to) "
    r"(?:help|assist|comply|fulfil|fulfill|provide|create|write|generate|produce|do that|do this|continue)"
    r"|I (?:must|have to) (?:decline|refuse))",
    re.IGNORECASE,
)
# These are refusals wherever they appear near the start.
REFUSAL_ANYWHERE = re.compile(
    r"\b(?:against (?:my|our) (?:guidelines|programming|content polic(?:y|ies)|usage polic(?:y|ies))"
    r"|(?:this|that|your) request (?:is|goes) against"
    r"|I (?:must|have to) (?:decline|refuse) (?:this|that|your) request)",
    re.IGNORECASE,
)
# Both in one pattern (RE2-compatible), for validation's vectorised check over a text's first
# REFUSAL_WINDOW characters.
REFUSAL = re.compile(f"(?:{REFUSAL_OPENING.pattern})|(?:{REFUSAL_ANYWHERE.pattern})", re.IGNORECASE)
BOILERPLATE = re.compile(
    r"\bas an? (?:AI|artificial intelligence)(?: language model| model| assistant| chatbot)?\b"
    r"|\bI(?:'m| am) (?:just )?an? (?:AI|language model|large language model|chatbot|virtual assistant)\b"
    r"|\bI hope (?:this|that|these) (?:helps|meets|works|is helpful)"
    r"|\b(?:let me know|feel free to ask) if you(?:'d| would)? (?:like|want|need|have)"
    r"|\bI don'?t have (?:personal )?(?:opinions|feelings|beliefs|emotions)\b"
    r"|\A\s*(?:sure|certainly|of course|absolutely|okay|ok)\b[!,.]?\s*(?:here(?:'s| is| are)|below is|I(?:'d| would) be happy)",
    re.IGNORECASE,
)
WORDS = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
LETTERS = re.compile(r"[^\W\d_]+")
ENGLISH_FUNCTION_WORDS = set("""
the of and to a in is it that was for on are with as his her they be at by this had from or have
an but not what all were when we there can which their said if will each about how up out them
she many some so these would other into has more two time could no my than been who its now
did down only way did get through just where most before after also very should because those
while any our your you he him me i us then over such much being same both each another every
""".split())
REFUSAL_WINDOW = 300  # characters from the start where a refusal counts (stories may quote one later)


def repeated_ngram_ratio(text: str, n: int = 3) -> float:
    """1 - distinct/total word n-grams: 0 for no repetition, close to 1 for a loop."""
    words = [w.lower() for w in WORDS.findall(text)]
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def looks_english(text: str) -> bool:
    """The dependency-free heuristic described in the module docstring."""
    letters = "".join(LETTERS.findall(text))
    if letters and len(letters.encode("ascii", "ignore")) / len(letters) < 0.8:
        return False
    words = [w.lower() for w in WORDS.findall(text)]
    if len(words) < 12:
        return True
    return sum(w in ENGLISH_FUNCTION_WORDS for w in words) / len(words) >= 0.15


def check_text(text: str, quality: Quality | None = None) -> list[str]:
    """The quality flags of one generated text (an empty list when it passes)."""
    quality = quality or Quality()
    stripped = (text or "").strip()
    flags = []
    if REFUSAL.search(stripped[:REFUSAL_WINDOW]):
        flags.append("refusal")
    if BOILERPLATE.search(stripped):
        flags.append("boilerplate")
    if len(stripped) < quality.min_chars:
        flags.append("too_short")
    if len(stripped) > quality.max_chars:
        flags.append("too_long")
    if repeated_ngram_ratio(stripped) > quality.max_repeated_ngram_ratio:
        flags.append("repetition")
    if quality.language == "en" and stripped and not looks_english(stripped):
        flags.append("wrong_language")
    return flags
