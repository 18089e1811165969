"""Bootstrap confidence intervals over examples, vectorised with numpy.

Every score a benchmark reports is a function of per-example decisions (StereoSet: stereotype
preferred or not, and how many meaningful sentences beat the unrelated one, per target term;
CrowS-Pairs: which sentence of a pair scored higher). A resample draws the examples of a result
cell with replacement; the score of every resample comes from counts made with one `bincount`
over all resamples at once, so 1,000 resamples of the full StereoSet dev set take about a second.

The same resampled examples serve several runs (before/after, each seed, the control arm), which
makes their differences paired: example-level noise common to both sides cancels. Resamples are
drawn from `numpy.random.default_rng(seed)` in a fixed cell order, so a seed gives the same
intervals on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Cell:
    """One result cell (a task and domain, a bias type, an overall): the positions of its
    examples in the decision arrays, grouped in strata that are resampled separately (StereoSet's
    global overall keeps each task's number of examples)."""

    key: tuple
    strata: tuple[np.ndarray, ...]


def draw(cells: list[Cell], resamples: int, seed: int = DEFAULT_SEED) -> dict[tuple, np.ndarray]:
    """For each cell, a (resamples, n) array of example positions drawn with replacement."""
    rng = np.random.default_rng(seed)
    drawn = {}
    for cell in cells:
        parts = [stratum[rng.integers(0, len(stratum), size=(resamples, len(stratum)))]
                 for stratum in cell.strata if len(stratum)]
        drawn[cell.key] = np.concatenate(parts, axis=1) if parts else np.empty((resamples, 0), dtype=np.int64)
    return drawn


def interval(samples: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The percentile interval of bootstrap samples (NaN samples, e.g. an empty resample, left out)."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return [float(low), float(high)]


def format_score(value, ci=None) -> str:
    """A score for a table, with its interval when there is one: `57.07 [55.9, 58.3]`."""
    if value is None:
        return "n/a"
    return f"{value:.2f}" if not ci else f"{value:.2f} [{ci[0]:.1f}, {ci[1]:.1f}]"


def verdict(ci: list[float] | None) -> str:
    """A difference's interval in words."""
    if ci is None:
        return "not measured"
    if ci[1] < 0:
        return "lower, CI excludes 0"
    if ci[0] > 0:
        return "higher, CI excludes 0"
    return "no detectable change"


def term_average(positions: np.ndarray, group: np.ndarray, groups: int, values: dict[str, np.ndarray]) -> dict:
    """For each resample (row of `positions`), the sum of each value per group and the number of
    examples per group: {"total": (B, groups), name: (B, groups)}."""
    resamples, size = positions.shape
    flat = (np.arange(resamples)[:, None] * groups + group[positions]).ravel()
    length = resamples * groups
    counts = {"total": np.bincount(flat, minlength=length).reshape(resamples, groups)}
    for name, value in values.items():
        counts[name] = np.bincount(flat, weights=value[positions].ravel(), minlength=length).reshape(resamples, groups)
    return counts


def mean_over_present(per_group: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Row means over the groups present in each resample (NaN when none is)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, per_group, 0.0).sum(axis=1) / present.sum(axis=1)


def seed_mean(per_seed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(K, B) samples of K seeds -> (B,) means over K seeds drawn with replacement for each
    resample, so an interval covers the spread between seeds as well as between examples."""
    seeds, resamples = per_seed.shape
    picked = rng.integers(0, seeds, size=(resamples, seeds))
    return per_seed[picked, np.arange(resamples)[:, None]].mean(axis=1)


def _mean(points: list) -> float | None:
    return None if not points or any(p is None for p in points) else float(np.mean(points))


def compare_arms(before: np.ndarray, before_point, data: np.ndarray, data_points: list, control: np.ndarray = None,
                 control_points: list | None = None, seed: int = DEFAULT_SEED) -> dict:
    """One score before fine-tuning, after it (the mean over seeds) and the change, each with a 95%
    interval; with a control arm also the control's change and the effect of the data,
    (after - before) on the data minus (after - before) on the control. `before` holds (B,)
    bootstrap samples of the model before, `data` and `control` (K, B) samples of each seed's
    model, all on the same resampled examples, so every difference is paired; the seeds of each
    arm are resampled too. Points come from the full examples."""
    rng = np.random.default_rng(seed)
    found = {"before": before_point, "before_ci": interval(before)}
    after_point = _mean(data_points)
    if before_point is None or after_point is None:
        return {**found, "after": after_point, "change": None, "verdict": "not measured"}
    data_mean = seed_mean(np.asarray(data), rng)
    change_ci = interval(data_mean - before)
    found.update(after=after_point, after_ci=interval(data_mean), change=after_point - before_point,
                 change_ci=change_ci, verdict=verdict(change_ci))
    control_point = _mean(control_points)
    if control is None or control_point is None:
        return found
    control_mean = seed_mean(np.asarray(control), rng)
    control_ci, effect_ci = interval(control_mean - before), interval(data_mean - control_mean)
    found.update(control_after=control_point, control_after_ci=interval(control_mean),
                 control_change=control_point - before_point, control_change_ci=control_ci,
                 effect=after_point - control_point, effect_ci=effect_ci, effect_verdict=verdict(effect_ci))
    return found
