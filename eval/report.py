"""`vdata eval report`: StereoSet and CrowS-Pairs before fine-tuning, fine-tuning on the vdata
dataset (and, with `control`, on a control dataset at the same steps and token budget), K seeds
each, the benchmarks again after every run, and the comparison with bootstrap intervals: the
change on the data, the change on the control, and the effect of the data beyond the control.
Held-out perplexity and LMS stand beside every bias number, so a lower bias score that comes from
a damaged model shows. Written as JSON, markdown and a chart; with `push`, appended to the repo's
evaluation history and written into the card (history.py). Meant to run on a schedule: see
docs/eval.md for a CI workflow.

Layout of OUTPUT: before/stereoset, before/crows-pairs, then for each arm (data, control) and
seed S: ARM-seedS/finetune, ARM-seedS/stereoset, ARM-seedS/crows-pairs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vdata_hub.errors import EvalError
from vdata_hub.eval.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, compare_arms, draw, format_score
from vdata_hub.progress import ProgressArg


@dataclass
class ReportResult:
    report: dict
    markdown: str
    output: Path
    pushed_to: str | None = None
    commit_url: str | None = None

    def summary(self) -> str:
        lines = [self.markdown, "", f"Written to {self.output}/ (report.json, report.md, report.png)"]
        if self.pushed_to:
            lines.append(f"Evaluation section and history of {self.pushed_to} updated: {self.commit_url}")
        return "\n".join(lines)


@dataclass
class Run:
    """One model's results: the fine-tuning behind it (None for the model before) and both benchmarks."""

    finetune: object
    stereoset: object
    crows_pairs: object


def report(model: str = "gpt2", data: str = "org/vdata", output: str = "eval-report", stereoset: str | None = None,
           crows_pairs: str | None = None, max_steps: int = 200, max_examples: int | None = None,
           repo: str | None = None, push: bool = False, token: str | None = None, device: str | None = None,
           progress: ProgressArg = False, config: str | None = None, revision: str | None = None,
           learning_rate: float = 5e-5, block_size: int = 256, batch_size: int = 8, reuse: bool = False, control: str | None = None,
           seeds: int = 1, resamples: int = DEFAULT_RESAMPLES) -> ReportResult:
    """Run the evaluation. `stereoset` / `crows_pairs`: the benchmarks' files (default: the Hub).
    `control`: a dataset of the same kind without the de-biasing instructions (e.g. made with the
    control-small spec), fine-tuned with the same settings. `seeds`: training seeds per arm.
    `progress`: bars of the benchmarks and fine-tuning runs (see vdata_hub.progress).
    reuse: a stage whose output is already in OUTPUT is read instead of run again, so a long
    evaluation can be run stage by stage (or in --shard pieces) and reported at the end."""
    from vdata_hub.eval.charts import report_chart

    seeds = int(seeds)
    if seeds < 1:
        raise EvalError(f"`seeds` {seeds}: need at least one training seed")
    target = _push_target(repo, data) if push else None
    if target is not None:  # a Hub that cannot be reached, or a token that cannot write, fails before the work
        check_push(target, token)
    out = Path(output)
    bench = {"stereoset": stereoset, "crows_pairs": crows_pairs, "max_examples": max_examples, "device": device,
             "progress": progress, "resamples": resamples}
    train = {"max_steps": max_steps, "learning_rate": learning_rate, "block_size": block_size,
             "batch_size": batch_size, "device": device, "progress": progress}
    before = _run(out / "before", str(model), bench, reuse)
    arms = {"data": [_tuned_run(out / f"data-seed{s}", str(model), str(data), config, revision, s, train, bench,
                                reuse) for s in range(seeds)]}
    if control:
        arms["control"] = [_tuned_run(out / f"control-seed{s}", str(model), str(control), None, None, s, train,
                                      bench, reuse) for s in range(seeds)]
    _check_same_budget(arms)
    payload = _payload(str(model), str(data), config, control, before, arms, int(resamples), max_examples)
    markdown = render_markdown(payload)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown + "\n", encoding="utf-8")
    report_chart(payload["measures"], out / "report.png", title=f"{model} fine-tuned on {data}")
    result = ReportResult(report=payload, markdown=markdown, output=out)
    if target is not None:
        from vdata_hub.eval.history import push_history

        result.pushed_to, result.commit_url = target, push_history(target, payload, markdown, token=token)
    return result


def _push_target(repo: str | None, data: str) -> str:
    """The dataset repo whose card --push updates: `repo`, else DATA when it is a Hub repo."""
    from vdata_hub.config import resolve_repo

    return repo or (str(data) if not Path(str(data)).exists() else resolve_repo(None))


def check_push(repo: str, token: str | None = None) -> None:
    """Fail now, not after the evaluation, when the Hub cannot be reached, the repo does not
    exist or the token cannot write."""
    from vdata_hub import hub

    hf_api = hub.api(token)
    hub.check_write_token(hf_api, repo, token)
    hub.main_sha(hf_api, repo, token)


def _done(path: Path, reuse: bool) -> bool:
    return reuse and path.is_file()


def _run(folder: Path, model: str, bench: dict, reuse: bool, tuned=None) -> Run:
    """Both benchmarks on one model (read back from `folder` with reuse)."""
    from vdata_hub.eval.crows_pairs_run import CrowsPairsResult, run_crows_pairs
    from vdata_hub.eval.stereoset_run import StereosetResult, run_stereoset

    common = {"device": bench["device"], "max_examples": bench["max_examples"], "progress": bench["progress"],
              "resamples": bench["resamples"]}
    stereoset = (StereosetResult.load(folder / "stereoset") if _done(folder / "stereoset" / "results.json", reuse)
                 else run_stereoset(model=model, data=bench["stereoset"], output=str(folder / "stereoset"), **common))
    crows = (CrowsPairsResult.load(folder / "crows-pairs") if _done(folder / "crows-pairs" / "results.json", reuse)
             else run_crows_pairs(model=model, data=bench["crows_pairs"], output=str(folder / "crows-pairs"),
                                  **common))
    return Run(tuned, stereoset, crows)


def _tuned_run(folder: Path, model: str, data: str, config, revision, seed: int, train: dict, bench: dict,
               reuse: bool) -> Run:
    from vdata_hub.eval.finetune import FinetuneResult, finetune

    tuned = (FinetuneResult.load(folder / "finetune" / "finetune.json")
             if _done(folder / "finetune" / "finetune.json", reuse)
             else finetune(model=model, data=data, output=str(folder / "finetune"), config=config, revision=revision,
                           seed=seed, **train))
    return _run(folder, tuned.final_dir, bench, reuse, tuned)


def _check_same_budget(arms: dict) -> None:
    """Every run of both arms saw the same number of steps and tokens (else the comparison is unfair)."""
    budgets = {(run.finetune.steps, run.finetune.tokens_seen or None) for runs in arms.values() for run in runs}
    if len(budgets) > 1:
        raise EvalError(f"the fine-tuning runs differ in steps or tokens seen ({sorted(budgets, key=str)}); "
                        "give both arms the same `max_steps`, `batch_size` and `block_size` (or rerun the stale "
                        "ARM-seedS/finetune folder)")


# The comparison: every score of both benchmarks, before and after, with paired intervals.

def stereoset_samples(before: Run, arms: dict, resamples: int, seed: int = DEFAULT_SEED):
    """Points and bootstrap samples of every StereoSet cell for the model before and each run,
    all on the same resampled examples."""
    from vdata_hub.eval import scoring
    from vdata_hub.eval.stereoset_data import load_stereoset, read_predictions

    meta = before.stereoset.meta
    examples = load_stereoset(meta["data"], meta.get("max_examples"), shard=meta.get("shard"))
    examples = {task: rows for task, rows in examples.items() if task in before.stereoset.results}
    drawn = draw(scoring.cells(examples), resamples, seed)

    def one(result):
        given = read_predictions(result.output / "predictions.json")
        score_of = {sid: score for task in given.values() for sid, score in task.items()}
        points = scoring.evaluate_results(examples, score_of)
        flat = {key: points[key[0]] if len(key) == 1 else points[key[0]][key[1]] for key in drawn}
        return flat, scoring.resampled_scores(scoring.decision_arrays(examples, score_of), drawn)

    return one(before.stereoset), {arm: [one(run.stereoset) for run in runs] for arm, runs in arms.items()}


def crows_pairs_samples(before: Run, arms: dict, resamples: int, seed: int = DEFAULT_SEED):
    """The same for CrowS-Pairs, from each run's scores.jsonl."""
    from vdata_hub.eval import crows_pairs_run as crows
    from vdata_hub.eval.run_folder import read_rows

    rows_before = read_rows(before.crows_pairs.output)
    drawn = draw(crows.cells(rows_before), resamples, seed)

    def one(result):
        rows = read_rows(result.output)
        if [r["index"] for r in rows] != [r["index"] for r in rows_before]:
            raise EvalError(f"CrowS-Pairs runs {before.crows_pairs.output} and {result.output} cover different "
                            "pairs; score every model on the same data (delete the stale crows-pairs folder)")
        points = crows.evaluate_pairs(rows)
        flat = {key: points["overall"] if key == ("overall",) else points["by_bias_type"][key[1]] for key in drawn}
        return flat, crows.resampled_scores(crows.decision_arrays(rows), drawn)

    return one(before.crows_pairs), {arm: [one(run.crows_pairs) for run in runs] for arm, runs in arms.items()}


def _label(benchmark: str, key: tuple) -> str:
    if benchmark == "crows_pairs":
        return "CrowS-Pairs " + ("overall" if key == ("overall",) else key[1])
    return "StereoSet " + ("both tasks overall" if key == ("overall",) else f"{key[0]} {key[1]}")


def measures(benchmark: str, before, arms: dict) -> list[dict]:
    """One comparison per score: SS of every StereoSet cell, LMS and ICAT of the overall ones
    (beside the SS they qualify), the CrowS-Pairs metric of every bias type and overall."""
    (before_points, before_samples), found = before, []
    for key in before_points:
        if benchmark == "stereoset":
            names = ("SS Score", "LM Score", "ICAT Score") if key[-1] == "overall" else ("SS Score",)
        else:
            names = ("metric",)
        for name in names:
            def stack(arm):
                runs = arms.get(arm) or []
                return (np.stack([samples[key][name] for _, samples in runs]) if runs else None,
                        [points[key][name] for points, _ in runs])

            (data, data_points), (control, control_points) = stack("data"), stack("control")
            count = before_points[key]["Count" if benchmark == "stereoset" else "count"]
            found.append({"benchmark": benchmark, "cell": list(key), "score": name, "label": _label(benchmark, key),
                          "count": count, **compare_arms(before_samples[key][name], before_points[key][name], data,
                                                         data_points, control, control_points)})
    return found


def _perplexity(runs: list[Run]) -> dict | None:
    if not runs:
        return None
    after = [run.finetune.perplexity_after for run in runs]
    return {"before": runs[0].finetune.perplexity_before, "after": float(np.mean(after)), "after_per_seed": after,
            "data_revision": runs[0].finetune.data_revision}


def _tool_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vdata-hub")
    except PackageNotFoundError:
        return None


def _payload(model: str, data: str, config, control, before: Run, arms: dict, resamples: int, max_examples) -> dict:
    from vdata_hub.eval.likelihood import INTERSENTENCE_METHOD

    first = arms["data"][0].finetune
    found = (measures("stereoset", *stereoset_samples(before, arms, resamples))
             + measures("crows_pairs", *crows_pairs_samples(before, arms, resamples)))
    meta = before.stereoset.meta
    return {
        "model": model, "data": data, "config": config, "data_revision": first.data_revision,
        "control": {"data": str(control), "revision": arms["control"][0].finetune.data_revision} if control else None,
        "seeds": len(arms["data"]), "steps": first.steps, "learning_rate": first.learning_rate,
        "block_size": first.block_size, "batch_size": first.batch_size, "processes": first.processes,
        "tokens_per_run": first.tokens_seen,
        "train_blocks": {arm: runs[0].finetune.train_blocks for arm, runs in arms.items()},
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "device": first.device,
        "stereoset_data": meta["data"], "crows_pairs_data": before.crows_pairs.meta["data"],
        "max_examples": max_examples or meta.get("max_examples"), "stereoset_shard": meta.get("shard"),
        "resamples": resamples, "bootstrap_seed": DEFAULT_SEED,
        "perplexity": {arm: _perplexity(runs) for arm, runs in arms.items()},
        "measures": found,
        "notes": [INTERSENTENCE_METHOD] if "intersentence" in before.stereoset.results else [],
        "tool_version": _tool_version(),
    }


def _signed(value, ci=None) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.2f}" if not ci else f"{value:+.2f} [{ci[0]:+.1f}, {ci[1]:+.1f}]"


def render_markdown(payload: dict) -> str:
    """The latest run for the card: what was run on which revision, the headline verdicts and
    the table of every score."""
    control = payload.get("control")
    subset = f", first {payload['max_examples']} examples" if payload.get("max_examples") else ""
    if payload.get("stereoset_shard"):
        picked, k = payload["stereoset_shard"].split("/")
        subset += f", the StereoSet examples at positions {picked} modulo {k} of each task"
    seeds = payload["seeds"]
    arms = f"on `{payload['data']}` at revision `{payload['data_revision']}`"
    if control:
        arms += f" and, as a control, on `{control['data']}` at `{control['revision']}`"
    lines = [
        "### Bias evaluation: StereoSet and CrowS-Pairs before and after fine-tuning", "",
        f"Model `{payload['model']}` fine-tuned {arms}: {payload['steps']} steps "
        f"({payload['tokens_per_run'] or 'n/a'} tokens) per run, {seeds} seed{'s' if seeds > 1 else ''}"
        f"{' per arm' if control else ''}, {payload['date']} (StereoSet: {payload['stereoset_data']}; "
        f"CrowS-Pairs: {payload['crows_pairs_data']}{subset}).", ""]
    for arm, ppl in payload["perplexity"].items():
        if ppl:
            lines.append(f"- Held-out perplexity, {arm} arm: {ppl['before']:.2f} → {ppl['after']:.2f}"
                         + (" (mean over seeds)" if seeds > 1 else ""))
    for benchmark, cell, score, name in (("stereoset", ["overall"], "SS Score", "StereoSet SS (both tasks)"),
                                         ("stereoset", ["overall"], "LM Score", "StereoSet LMS (both tasks)"),
                                         ("crows_pairs", ["overall"], "metric", "CrowS-Pairs metric")):
        m = next((m for m in payload["measures"] if m["benchmark"] == benchmark and m["cell"] == cell
                  and m["score"] == score), None)
        if m is None:
            continue
        line = (f"- {name}: {format_score(m['before'])} → {format_score(m.get('after'))}, change "
                f"{_signed(m.get('change'), m.get('change_ci'))}: **{m['verdict']}**")
        if control:
            line += (f"; control {_signed(m.get('control_change'), m.get('control_change_ci'))}; effect of the data "
                     f"beyond the control {_signed(m.get('effect'), m.get('effect_ci'))}: "
                     f"**{m.get('effect_verdict', 'not measured')}**")
        lines.append(line)
    header = "| score | n | before | after | change [95% CI] | verdict |"
    rule = "|---|---:|---:|---:|---:|---|"
    if control:
        header += " control after | control change | effect [95% CI] | verdict |"
        rule += "---:|---:|---:|---|"
    lines += ["", header, rule]
    for m in payload["measures"]:
        name = {"SS Score": "SS", "LM Score": "LMS", "ICAT Score": "ICAT", "metric": "metric"}[m["score"]]
        row = (f"| {m['label']} {name} | {m['count']} | {format_score(m['before'], m.get('before_ci'))} | "
               f"{format_score(m.get('after'), m.get('after_ci'))} | {_signed(m.get('change'), m.get('change_ci'))} | "
               f"{m['verdict']} |")
        if control:
            row += (f" {format_score(m.get('control_after'), m.get('control_after_ci'))} | "
                    f"{_signed(m.get('control_change'), m.get('control_change_ci'))} | "
                    f"{_signed(m.get('effect'), m.get('effect_ci'))} | {m.get('effect_verdict', 'not measured')} |")
        lines.append(row)
    lines += ["", "SS and the CrowS-Pairs metric: 50 is unbiased. LMS and ICAT: 100 is best. Intervals: 95% "
                  f"percentile bootstrap over examples ({payload['resamples']} resamples"
                  + (", seeds resampled too" if seeds > 1 else "") + "); changes are paired (the same resampled "
                  "examples before and after)."
              + (" Effect = (after - before) on the data - (after - before) on the control." if control else "")
              + " " + "; ".join(n for n in payload["notes"] if n) + "."]
    return "\n".join(lines)
