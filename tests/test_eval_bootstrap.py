"""Bootstrap intervals: they contain the point estimate, narrow as examples grow, repeat with the
seed; paired differences and the control-arm effect say in words whether a change is detectable."""

import random

import numpy as np
import pytest

from vdata_hub.eval.bootstrap import compare_arms, draw, verdict
from vdata_hub.eval.crows_pairs_run import confidence_intervals as crows_intervals
from vdata_hub.eval.crows_pairs_run import evaluate_pairs
from vdata_hub.eval.scoring import cells, confidence_intervals, decision_arrays, evaluate_results, resampled_scores
from vdata_hub.eval.stereoset_data import Example, Sentence

DOMAINS = ("gender", "profession", "race", "religion")


def stereoset(per_task: int, seed: int = 0, stereotype_rate: float = 0.6):
    """Examples over 40 target terms whose stereotype wins with probability `stereotype_rate`."""
    rng = random.Random(seed)
    examples, scores = {}, {}
    for task in ("intrasentence", "intersentence"):
        for n in range(per_task):
            eid = f"{task}-{n}"
            sentences = tuple(Sentence(f"{eid}-{label}", "", label)
                              for label in ("stereotype", "anti-stereotype", "unrelated"))
            term = n % 40
            examples.setdefault(task, []).append(Example(eid, task, f"term{term}", DOMAINS[term % 4], "", sentences))
            pro = rng.random() < stereotype_rate
            scores.update({f"{eid}-stereotype": 0.6 if pro else 0.4, f"{eid}-anti-stereotype": 0.5,
                           f"{eid}-unrelated": rng.choice([0.1, 0.45, 0.9])})
    return examples, scores


def width(ci):
    return ci[1] - ci[0]


def test_stereoset_intervals_contain_the_estimate_and_narrow_as_examples_grow():
    widths = []
    for per_task in (100, 400, 1600):
        examples, scores = stereoset(per_task)
        results, intervals = evaluate_results(examples, scores), confidence_intervals(examples, scores, 1000, 0)
        for task, domain in [("intrasentence", "gender"), ("intersentence", "overall"), ("overall", None)]:
            cell, ci = (results[task], intervals[task]) if domain is None else (results[task][domain],
                                                                                 intervals[task][domain])
            for name in ("SS Score", "LM Score", "ICAT Score"):
                assert ci[name][0] <= cell[name] <= ci[name][1], (per_task, task, domain, name)
        widths.append(width(intervals["overall"]["SS Score"]))
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.35)  # ~ 1 / sqrt(n)


def test_intervals_repeat_with_the_seed():
    examples, scores = stereoset(200)
    first = confidence_intervals(examples, scores, 300, seed=7)
    assert confidence_intervals(examples, scores, 300, seed=7) == first
    assert confidence_intervals(examples, scores, 300, seed=8) != first
    assert first["resamples"] == 300 and first["seed"] == 7


def test_crows_pairs_intervals_contain_the_estimate_and_narrow_as_pairs_grow():
    rng = random.Random(1)
    widths = []
    for count in (150, 600, 2400):
        rows = [{"index": n, "bias_type": ["gender", "age", "religion"][n % 3],
                 "stereo_antistereo": "stereo" if n % 5 else "antistereo",
                 "sent_more_score": rng.choice([-1.0, -2.0, -3.0]), "sent_less_score": -2.0} for n in range(count)]
        results, intervals = evaluate_pairs(rows), crows_intervals(rows, 1000, 0)
        for name in ("metric", "stereotype", "anti_stereotype"):
            low, high = intervals["overall"][name]
            assert low <= results["overall"][name] <= high
            for bias_type, block in results["by_bias_type"].items():
                low, high = intervals["by_bias_type"][bias_type][name]
                assert low <= block[name] <= high
        widths.append(width(intervals["overall"]["metric"]))
    assert widths[0] > widths[1] > widths[2]


def test_paired_differences_and_their_verdicts():
    examples, before = stereoset(500, seed=3, stereotype_rate=0.65)
    positions = draw(cells(examples), 1000, 0)
    same = resampled_scores(decision_arrays(examples, before), positions)[("overall",)]["SS Score"]
    point = evaluate_results(examples, before)["overall"]["SS Score"]
    unchanged = compare_arms(same, point, same[None], [point])
    assert unchanged["change"] == 0.0 and unchanged["change_ci"] == [0.0, 0.0]
    assert unchanged["verdict"] == "no detectable change" and unchanged["after_ci"] == unchanged["before_ci"]
    # after: a third of the stereotype wins flip to the anti-stereotype
    flipped = dict(before)
    for n, e in enumerate(e for task in examples.values() for e in task):
        if n % 3 == 0:
            flipped[e.sentence("stereotype").id] = 0.4
    after = resampled_scores(decision_arrays(examples, flipped), positions)[("overall",)]["SS Score"]
    lower = compare_arms(same, point, after[None], [evaluate_results(examples, flipped)["overall"]["SS Score"]])
    assert lower["change"] < -10 and lower["change_ci"][1] < 0 and lower["verdict"] == "lower, CI excludes 0"
    assert lower["change_ci"][0] <= lower["change"] <= lower["change_ci"][1]
    assert "effect" not in lower  # no control arm
    assert verdict([0.5, 2.0]) == "higher, CI excludes 0" and verdict([-1.0, 2.0]) == "no detectable change"


def test_the_effect_resamples_seeds_as_well_as_examples():
    rng = np.random.default_rng(0)
    before = rng.normal(60, 1, 1000)
    noise = rng.normal(0, 1, (3, 1000))
    same = compare_arms(before, 60.0, before + 1 + noise, [61.0] * 3, before + 1 + noise[::-1], [61.0] * 3)
    assert same["effect"] == 0.0 and same["effect_ci"][0] < 0 < same["effect_ci"][1]
    assert same["effect_verdict"] == "no detectable change" and same["control_change"] == 1.0
    lower = compare_arms(before, 60.0, before - 4 + noise, [56.0] * 3, before + noise, [60.0] * 3)
    assert lower["effect"] == -4.0 and lower["effect_verdict"] == "lower, CI excludes 0"
    # seeds that disagree widen the interval even when every example resample agrees
    spread = np.array([[-6.0], [0.0], [6.0]]) + before
    wide = compare_arms(before, 60.0, spread, [54.0, 60.0, 66.0], before[None].repeat(3, 0), [60.0] * 3)
    assert width(wide["effect_ci"]) > 5 and width(compare_arms(before, 60.0, spread[:1], [54.0])["change_ci"]) < 1e-9
