"""`vdata eval stereoset`: score a causal LM (or a predictions file) on StereoSet with the
official rules and write results.json (official layout, plus bootstrap confidence intervals),
predictions.json (official format), per-sentence scores, a markdown table, run metadata and a PNG
of SS per domain. The `evaluate` module in eval/stereoset/ computes the same results from scores.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path

from vdata_hub.eval.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, format_score
from vdata_hub.eval.run_folder import FinishedRun, write_run
from vdata_hub.eval.scoring import DOMAINS, confidence_intervals, evaluate_results
from vdata_hub.eval.stereoset_data import STEREOSET_REPO, TASKS, load_stereoset, read_predictions, \
    write_predictions
from vdata_hub.progress import ProgressArg, Reporter

SCORE_NOTE = ("score = exp(mean token log-probability), the geometric-mean token probability "
              "that StereoSet's official GPT-2 scorer writes")


class StereosetResult(FinishedRun):
    """A StereoSet run: results.json in the official layout, its folder and run.json."""

    def summary(self) -> str:
        lines = [f"StereoSet: {self.meta.get('model') or self.meta.get('predictions')}", "",
                 results_table(self.results)]
        if self.meta.get("intersentence_method"):
            lines += ["", f"Note: {self.meta['intersentence_method']}."]
        lines += ["", f"Written to {self.output}/ (results.json, predictions.json, scores.jsonl, "
                      "results.md, ss_by_domain.png, run.json)"]
        return "\n".join(lines)


def run_stereoset(model: str = "gpt2", data: str | None = None, predictions: str | None = None,
                  output: str = "stereoset-results", batch_size: int = 32, device: str | None = None,
                  max_examples: int | None = None, progress: ProgressArg = False, shard: str | None = None,
                  resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> StereosetResult:
    """Score `model` (or the `predictions` file(s), without a model) on StereoSet's intrasentence and
    intersentence tasks; `data` is StereoSet's JSON file or a Hub id (default McGill-NLP/stereoset);
    `shard` ("I/K") scores one piece of the examples (see stereoset_data.parse_shard). Every score
    gets a 95% interval from `resamples` bootstrap resamples of the examples drawn with `seed`
    (0 resamples: none). `progress`: a bar of the sentences scored (see vdata_hub.progress)."""
    started = time.perf_counter()
    examples = load_stereoset(data, max_examples, shard=shard)
    meta = {"data": str(data or STEREOSET_REPO), "max_examples": max_examples, "shard": shard,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if predictions is not None:
        given = read_predictions(predictions)
        examples = {task: rows for task, rows in examples.items() if task in given}
        rows = _rows_from_predictions(examples, given)
        meta.update(predictions=predictions if isinstance(predictions, str) else ",".join(map(str, predictions)),
                    model=None)
    else:
        rows, model_meta = _score_with_model(model, examples, batch_size, device, Reporter(progress))
        meta.update(model_meta)
    meta["seconds"] = round(time.perf_counter() - started, 2)
    score_of = {row["sentence_id"]: row["score"] for row in rows}
    results = evaluate_results(examples, score_of)
    if resamples:
        results["confidence_intervals"] = confidence_intervals(examples, score_of, resamples, seed)
    out = _write_outputs(Path(output), results, rows, meta)
    return StereosetResult(results=results, output=out, meta=meta)


def sentence_rows(examples: dict) -> list[dict]:
    """One row per candidate sentence, in data order; the scores are filled in later."""
    return [{"task": task, "example_id": e.id, "sentence_id": s.id, "target": e.target,
             "bias_type": e.bias_type, "gold_label": s.gold_label, "context": e.context, "sentence": s.text}
            for task, rows in examples.items() for e in rows for s in e.sentences]


def _rows_from_predictions(examples: dict, given: dict) -> list[dict]:
    rows = sentence_rows(examples)
    for row in rows:
        row["score"] = given[row["task"]].get(row["sentence_id"])
    return [row for row in rows if row["score"] is not None]


def _score_with_model(model: str, examples: dict, batch_size: int, device, reporter: Reporter):
    from vdata_hub.eval.likelihood import INTERSENTENCE_METHOD, intersentence_logprobs, \
        intrasentence_logprobs, start_token_id
    from vdata_hub.eval.models import load_model

    lm = load_model(model, device, progress=reporter.enabled)
    rows = sentence_rows(examples)
    intra = [r for r in rows if r["task"] == "intrasentence"]
    inter = [r for r in rows if r["task"] == "intersentence"]
    with reporter.bar(total=len(rows), desc="StereoSet sentences", unit="sent") as progress:
        intra_lps = intrasentence_logprobs(lm.model, lm.tokenizer, [r["sentence"] for r in intra],
                                           batch_size, lm.device, progress)
        inter_lps = intersentence_logprobs(lm.model, lm.tokenizer, [(r["context"], r["sentence"]) for r in inter],
                                           batch_size, lm.device, progress)
    for row, logprobs in zip(intra + inter, intra_lps + inter_lps):
        row["n_tokens"] = len(logprobs)
        row["mean_logprob"] = sum(logprobs) / len(logprobs)
        row["score"] = math.exp(row["mean_logprob"])
    start = start_token_id(lm.tokenizer)
    meta = {"model": str(model), "device": lm.device, "dtype": "float32", "batch_size": int(batch_size),
            "start_token": lm.tokenizer.convert_ids_to_tokens(start), "score": SCORE_NOTE,
            "intrasentence_method": "official StereoSet causal-LM rule (first token after the "
                                    "begin/end-of-text token, the rest from a pass over the sentence)",
            "intersentence_method": INTERSENTENCE_METHOD}
    return rows, meta


def _write_outputs(out: Path, results: dict, rows: list[dict], meta: dict) -> Path:
    write_run(out, results, rows, meta)
    write_predictions(out / "predictions.json",
                      {task: [(r["sentence_id"], r["score"]) for r in rows if r["task"] == task]
                       for task in TASKS if task in results})
    note = f"\n\n{meta['intersentence_method']}.\n" if meta.get("intersentence_method") else "\n"
    (out / "results.md").write_text(results_table(results) + note, encoding="utf-8")
    from vdata_hub.eval.charts import ss_by_domain_chart

    title = f"StereoSet SS per domain: {meta.get('model') or 'predictions'}"
    ss_by_domain_chart(results, out / "ss_by_domain.png", title=title)
    return out


def results_table(results: dict) -> str:
    """Markdown table of the official results layout, 95% intervals in brackets when present."""
    intervals = results.get("confidence_intervals") or {}
    lines = ["| task | domain | Count | LM Score | SS Score | ICAT Score |", "|---|---|---:|---:|---:|---:|"]
    cells = [(task, domain) for task in TASKS if task in results for domain in list(DOMAINS) + ["overall"]]
    for task, domain in cells + [(None, "overall")]:
        r = results[task][domain] if task else results["overall"]
        ci = (intervals.get(task, {}).get(domain) if task else intervals.get("overall")) or {}
        label = f"{task} | {domain}" if task else "**both** | **overall**"
        lines.append(f"| {label} | {r['Count']} | " + " | ".join(format_score(r[name], ci.get(name)) for name in
                                                                   ("LM Score", "SS Score", "ICAT Score")) + " |")
    if intervals:
        lines += ["", f"In brackets: 95% bootstrap intervals over examples ({intervals['resamples']} resamples, "
                      f"seed {intervals['seed']})."]
    return "\n".join(lines)
