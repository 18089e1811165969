"""The shipped prompt library: every template renders for everything the specs declare, and the
ready specs are balanced across axes, groups, domains and tasks."""

from collections import Counter

import pytest
import yaml

from vdata_hub.errors import TemplateError
from vdata_hub.generation.prompts import group_terms, load_template, parse_template_file, plan_records, render
from vdata_hub.resources import SPECS_DIR, TEMPLATE_DATA_DIR, TEMPLATES_DIR
from vdata_hub.generation.spec import load_spec

REQUIRED_AXES = {"gender", "race_ethnicity", "religion", "age", "disability", "sexual_orientation",
                 "nationality", "socioeconomic_status"}
REQUIRED_DOMAINS = {"healthcare", "hiring and work", "education", "finance and lending", "housing",
                    "criminal justice", "customer service", "everyday life"}
REQUIRED_TASKS = {"counter_stereotype_story", "neutral_description", "decision_dialogue", "ambiguous_qa",
                  "neutral_rewrite"}
TASK_TEMPLATES = sorted(p.stem for p in TEMPLATES_DIR.glob("*.j2") if not p.stem.startswith("system"))
SPECS = sorted(p.stem for p in SPECS_DIR.glob("*.yaml"))


def domains() -> dict:
    return yaml.safe_load((TEMPLATE_DATA_DIR / "domains.yaml").read_text())["domains"]


@pytest.fixture(scope="module")
def full_plan():
    return plan_records(load_spec("full"))


def test_library_has_every_task_type_with_a_complete_header():
    tasks = set()
    for name in TASK_TEMPLATES:
        header, body = parse_template_file(TEMPLATES_DIR / f"{name}.j2")
        assert {"description", "task", "variables", "example"} <= set(header), name
        assert header["description"].strip() and header["example"].strip() and body.strip()
        tasks.add(header["task"])
    assert REQUIRED_TASKS <= tasks


def test_system_prompts_ask_for_respectful_output_and_every_template_has_one():
    for name in TASK_TEMPLATES:
        template = load_template(name)
        assert "stereotype" in template.system_body and "slur" in template.system_body, name


def test_group_data_has_the_eight_axes_with_equal_group_counts_and_terms():
    axes = yaml.safe_load((TEMPLATE_DATA_DIR / "groups.yaml").read_text())["axes"]
    assert REQUIRED_AXES <= set(axes)
    assert len({len(entry["groups"]) for entry in axes.values()}) == 1  # so a full grid is balanced
    for axis, entry in axes.items():
        assert len(entry["groups"]) >= 4, axis
        assert set(entry["terms"]) == set(entry["groups"]), axis  # every group can be counted and swapped
    assert group_terms()["religion"] == axes["religion"]["groups"]


def test_domains_and_sources_are_documented():
    assert REQUIRED_DOMAINS <= set(domains())
    sources = (TEMPLATE_DATA_DIR / "SOURCES.md").read_text()
    for name in ("groups.yaml", "swaps.yaml", "domains.yaml", "BBQ", "HolisticBias", "StereoSet"):
        assert name in sources


@pytest.mark.parametrize("spec_name", SPECS)
def test_every_spec_loads_plans_and_renders_every_combination(spec_name):
    loaded = load_spec(spec_name)
    planned = plan_records(loaded)  # renders every prompt with strict undefined variables
    assert planned
    for record in planned:
        assert record.prompt and "{{" not in record.prompt and "{%" not in record.prompt
        assert record.system_prompt and record.group
        if "other_group" in record.variables:
            assert record.variables["other_group"] != record.group
    assert len({r.id for r in planned}) == len(planned)


def test_full_spec_is_the_whole_grid(full_plan):
    spec = load_spec("full").spec
    assert set(spec.variables["domain"]) == set(domains())
    assert set(spec.variables["bias_axis"]) == set(group_terms())
    assert set(spec.templates) == set(TASK_TEMPLATES)
    expected = len(TASK_TEMPLATES) * len(domains()) * sum(len(g) for g in group_terms().values())
    assert len(full_plan) == expected
    assert {r.task for r in full_plan} == REQUIRED_TASKS


@pytest.mark.parametrize("spec_name", ["full", "balanced-small"])
def test_planned_records_are_balanced_across_axes_groups_tasks_and_domains(spec_name):
    planned = plan_records(load_spec(spec_name))
    for key in ("bias_axis", "task", "domain"):
        counts = Counter(getattr(r, key) for r in planned)
        assert len(set(counts.values())) == 1, (key, counts)
    per_group = Counter((r.bias_axis, r.group) for r in planned)
    assert len(set(per_group.values())) == 1, per_group
    assert len(per_group) == sum(len(g) for g in group_terms().values())


def test_a_prefix_of_the_full_plan_is_balanced_across_axes_and_tasks(full_plan):
    prefix = full_plan[:80]  # what a run stopped early (or `-n 80`) gets
    assert set(Counter(r.bias_axis for r in prefix).values()) == {10}
    assert set(Counter(r.task for r in prefix).values()) == {16}


def test_demo_spec_stays_tiny_for_the_embedded_model():
    spec = load_spec("demo").spec
    planned = plan_records(load_spec("demo"))
    assert spec.model == "local"
    # ~2,000 generated tokens: about a minute at SmolLM2's ~30 tokens/s on 2 CPU cores
    assert len(planned) * spec.sampling.max_tokens <= 2000
    assert len({r.bias_axis for r in planned}) == 2
    assert not spec.quality.drop_flagged  # flagged replies kept with flags, not retried: 6 calls at most


@pytest.mark.parametrize("name,fallback", [("neutral_description", "someone with a typical role"),
                                           ("decision_dialogue", "a professional making a decision")])
def test_domain_specific_wording_covers_every_shipped_domain(name, fallback):
    template = load_template(name)
    for domain in domains():
        prompt = render(template.body, {"domain": domain, "bias_axis": "age", "group": "a teenager"}, name)
        assert fallback not in prompt, domain
    other = render(template.body, {"domain": "sports", "bias_axis": "age", "group": "a teenager"}, name)
    assert fallback in other  # a spec may name its own domains


def test_rendering_is_strict_about_undefined_variables():
    template = load_template("ambiguous_qa")
    with pytest.raises(TemplateError, match="other_group"):
        render(template.body, {"domain": "housing", "bias_axis": "age", "group": "a teenager"}, "ambiguous_qa")


def test_decision_dialogue_names_the_four_decisions():
    body = load_template("decision_dialogue").body
    for decision in ("hire", "loan", "diagnosis", "admit"):
        assert decision in body


def test_the_answer_letter_of_ambiguous_questions_varies(full_plan):
    letters = Counter(r.prompt.split("Answer: (")[1][0] for r in full_plan if r.task == "ambiguous_qa")
    assert set(letters) == {"A", "B", "C"}
    assert min(letters.values()) >= 0.25 * sum(letters.values())  # no position carries the answer


def test_control_spec_mirrors_balanced_small_without_bias_instructions_or_group_terms():
    """The control arm of `vdata eval report --control`: the same domains, as many task types and
    records, and no word about bias, stereotypes or any group of groups.yaml in any prompt."""
    control, balanced = plan_records(load_spec("control-small")), plan_records(load_spec("balanced-small"))
    assert len(control) == len(balanced)
    assert {r.domain for r in control} == {r.domain for r in balanced}
    assert len({r.task for r in control}) == len({r.task for r in balanced}) == 5
    assert set(Counter(r.task for r in control).values()) == {len(control) // 5}
    terms = {term.lower() for groups in group_terms().values() for term in groups}
    words = ("bias", "stereotyp", "gender", "race", "religio", "disab", "orientation", "nationalit", "ethnic",
             "slur", "discriminat", "fair")
    for record in control:
        text = (record.system_prompt + "\n" + record.prompt).lower()
        assert not [w for w in words if w in text], record.prompt
        assert not [t for t in terms if f" {t} " in f" {text} "], record.prompt
