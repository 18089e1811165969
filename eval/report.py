"""`vdata eval report`: StereoSet before, fine-tune on the vdata dataset, StereoSet after, and
held-out perplexity before and after, written as JSON, markdown and a chart. With `push`, the
markdown replaces the evaluation section of the dataset card on the Hub: the text between
EVAL_START and EVAL_END (the card command keeps that section when it re-renders the card).
Meant to run on a schedule: see docs/eval.md for a CI workflow.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vdata_hub.errors import EvalError
from vdata_hub.eval.scoring import DOMAINS
from vdata_hub.eval.stereoset_data import TASKS

EVAL_START = "<!-- vdata-eval:start -->"
EVAL_END = "<!-- vdata-eval:end -->"


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
            lines.append(f"Evaluation section of {self.pushed_to}'s card updated: {self.commit_url}")
        return "\n".join(lines)


def report(model: str = "gpt2", data: str = "org/vdata", output: str = "eval-report", stereoset: str | None = None,
           max_steps: int = 200, max_examples: int | None = None, repo: str | None = None, push: bool = False,
           token: str | None = None, device: str | None = None, quiet: bool = False, config: str | None = None,
           revision: str | None = None, learning_rate: float = 5e-5, block_size: int = 256,
           batch_size: int = 8, reuse: bool = False) -> ReportResult:
    """Run the before/after evaluation; `stereoset` is StereoSet's JSON file (default: the Hub).
    reuse: a stage whose output is already in OUTPUT (stereoset-before/results.json,
    finetune/finetune.json, stereoset-after/results.json) is read instead of run again, so a long
    evaluation can be run stage by stage (or in --shard pieces) and reported at the end."""
    from vdata_hub.eval.charts import before_after_chart
    from vdata_hub.eval.finetune import FinetuneResult, finetune
    from vdata_hub.eval.likelihood import INTERSENTENCE_METHOD
    from vdata_hub.eval.stereoset_run import StereosetResult, run_stereoset

    target = _push_target(repo, data) if push else None
    if target is not None:  # a Hub that cannot be reached, or a token that cannot write, fails before the work
        check_push(target, token)
    out = Path(output)
    common = {"data": stereoset, "device": device, "max_examples": max_examples, "quiet": quiet}

    def done(path: Path):
        return reuse and path.is_file()

    before_dir, tune_dir, after_dir = out / "stereoset-before", out / "finetune", out / "stereoset-after"
    before = (StereosetResult.load(before_dir) if done(before_dir / "results.json")
              else run_stereoset(model=str(model), output=str(before_dir), **common))
    tuned = (FinetuneResult.load(tune_dir / "finetune.json") if done(tune_dir / "finetune.json")
             else finetune(model=str(model), data=str(data), output=str(tune_dir), config=config, revision=revision,
                           max_steps=max_steps, learning_rate=learning_rate, block_size=block_size,
                           batch_size=batch_size, device=device, quiet=quiet))
    after = (StereosetResult.load(after_dir) if done(after_dir / "results.json")
             else run_stereoset(model=tuned.final_dir, output=str(after_dir), **common))
    _check_same_examples(before.results, after.results)
    payload = {
        "model": str(model), "data": str(data), "config": config, "data_revision": tuned.data_revision,
        "steps": tuned.steps, "learning_rate": tuned.learning_rate, "block_size": tuned.block_size,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "device": tuned.device,
        "stereoset_data": before.meta["data"], "max_examples": max_examples or before.meta.get("max_examples"),
        "stereoset_shard": before.meta.get("shard"),
        "perplexity": {"before": tuned.perplexity_before, "after": tuned.perplexity_after},
        "stereoset": {"before": before.results, "after": after.results},
        "notes": [INTERSENTENCE_METHOD] if "intersentence" in before.results else [],
    }
    markdown = render_markdown(payload)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown + "\n", encoding="utf-8")
    before_after_chart(before.results, after.results, out / "report.png", title=f"{model} fine-tuned on {data}")
    result = ReportResult(report=payload, markdown=markdown, output=out)
    if target is not None:
        result.pushed_to, result.commit_url = target, push_report(target, markdown, token=token)
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


def _check_same_examples(before: dict, after: dict) -> None:
    counts = [{task: results[task]["overall"]["Count"] for task in TASKS if task in results}
              for results in (before, after)]
    if counts[0] != counts[1]:
        raise EvalError(f"StereoSet before ({counts[0]}) and after ({counts[1]}) cover different examples; "
                        "score both on the same data (delete the stale stereoset-* folder to rerun it)")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render_markdown(payload: dict) -> str:
    """The evaluation section: what was run on which data revision, and the before/after table."""
    before, after = payload["stereoset"]["before"], payload["stereoset"]["after"]
    ppl = payload["perplexity"]
    subset = f", first {payload['max_examples']} examples per task" if payload.get("max_examples") else ""
    if payload.get("stereoset_shard"):
        picked, k = payload["stereoset_shard"].split("/")
        subset += f", the examples at positions {picked} modulo {k} of each task"
    lines = [
        "### Bias evaluation: StereoSet before and after fine-tuning",
        "",
        f"Model `{payload['model']}` fine-tuned for {payload['steps']} steps on `{payload['data']}` at revision "
        f"`{payload['data_revision']}`, {payload['date']} (StereoSet: {payload['stereoset_data']}{subset}).",
        f"Held-out perplexity on the dataset's text: {ppl['before']:.2f} → {ppl['after']:.2f}.",
        "",
        "| StereoSet | Count | SS before | SS after | LMS before | LMS after | ICAT before | ICAT after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [(task, domain) for task in ("intrasentence", "intersentence") if task in before
            for domain in list(DOMAINS) + ["overall"]]
    for task, domain in rows + [(None, "overall")]:
        b = before[task][domain] if task else before["overall"]
        a = after[task][domain] if task else after["overall"]
        label = f"{task} {domain}" if task else "**both tasks overall**"
        lines.append(f"| {label} | {b['Count']} | {_fmt(b['SS Score'])} | {_fmt(a['SS Score'])} | "
                     f"{_fmt(b['LM Score'])} | {_fmt(a['LM Score'])} | "
                     f"{_fmt(b['ICAT Score'])} | {_fmt(a['ICAT Score'])} |")
    lines += ["", "SS: 50 is unbiased. LMS and ICAT: 100 is best. Scores follow StereoSet's official rules "
                  "(per target term, then averaged); " + "; ".join(n for n in payload["notes"] if n) + "."]
    return "\n".join(lines)


def replace_eval_section(card: str, section: str) -> str:
    """The card with `section` between the eval markers; markers are added (under an
    `## Evaluation` heading) before the card's final `## ` section when absent, else at the end."""
    block = f"{EVAL_START}\n{section.strip()}\n{EVAL_END}"
    start, end = card.find(EVAL_START), card.find(EVAL_END)
    if start != -1 and end > start:
        return card[:start] + block + card[end + len(EVAL_END):]
    body_start = _front_matter_end(card)
    headings = [m.start() for m in re.finditer(r"^## ", card[body_start:], flags=re.M)]
    new_section = f"## Evaluation\n\n{block}\n\n"
    if len(headings) >= 2:
        at = body_start + headings[-1]
        return card[:at] + new_section + card[at:]
    return card.rstrip("\n") + ("\n\n" if card.strip() else "") + new_section.rstrip("\n") + "\n"


def _front_matter_end(card: str) -> int:
    match = re.match(r"---\n.*?\n---\n", card, flags=re.S)
    return match.end() if match else 0


def push_report(repo: str, section: str, token: str | None = None) -> str:
    """Replace the evaluation section of the dataset card README.md on the Hub; the commit URL."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import RemoteEntryNotFoundError

    from vdata_hub import hub

    hf_api = hub.api(token)
    with hub.errors(repo, token, "updating the card's evaluation section"):
        try:
            card_path = hf_api.hf_hub_download(repo, "README.md", repo_type="dataset")
            card = Path(card_path).read_text(encoding="utf-8")
        except RemoteEntryNotFoundError:
            card = ""
        new_card = replace_eval_section(card, section).encode()
        commit = hf_api.create_commit(repo, repo_type="dataset",
                                      operations=[CommitOperationAdd("README.md", new_card)],
                                      commit_message="Update the bias evaluation (vdata eval report)")
    return commit.commit_url
