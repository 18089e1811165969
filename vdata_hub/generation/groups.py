"""The group data, templates/data/groups.yaml: every bias axis with its groups, the terms that
name each group (augment's swaps, stats' mention counts) and the pronouns a group implies. One
cached loader for prompts, augment and stats."""

from __future__ import annotations

from functools import lru_cache

import yaml

from vdata_hub.resources import TEMPLATE_DATA_DIR


@lru_cache(maxsize=1)
def load_axes() -> dict:
    """{axis: {"groups": [...], "terms": {group: {form: term(s)}}, "pronouns": {group: ...}}}."""
    return yaml.safe_load((TEMPLATE_DATA_DIR / "groups.yaml").read_text(encoding="utf-8"))["axes"]
