"""The evaluation history of a dataset repo: `eval report --push` appends one row per run to
eval/history.jsonl, draws eval/history.png (SS and CrowS-Pairs over dataset revisions) and writes
the card's evaluation section (the text between EVAL_START and EVAL_END, which `vdata card` keeps
verbatim): the latest run, a table of every run and the chart. One commit holds all three, made
on the revision that was read, so two reports pushed at once cannot drop each other's rows.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from vdata_hub.eval.bootstrap import format_score
from vdata_hub.repo.card import EVAL_END, EVAL_START
from vdata_hub.repo.layout import CARD_FILE, EVAL_HISTORY, EVAL_HISTORY_CHART

# (row key, benchmark, result cell, score): the numbers each history row keeps.
HEADLINES = (("stereoset_ss", "stereoset", ["overall"], "SS Score"),
             ("stereoset_lms", "stereoset", ["overall"], "LM Score"),
             ("stereoset_icat", "stereoset", ["overall"], "ICAT Score"),
             ("crows_pairs", "crows_pairs", ["overall"], "metric"))
KEPT = ("count", "before", "before_ci", "after", "after_ci", "change", "change_ci", "verdict", "control_after",
        "control_change", "control_change_ci", "effect", "effect_ci", "effect_verdict")


def headline(payload: dict, benchmark: str, cell: list, score: str) -> dict | None:
    return next((m for m in payload["measures"] if m["benchmark"] == benchmark and m["cell"] == cell
                 and m["score"] == score), None)


def history_row(payload: dict) -> dict:
    """What one run adds to eval/history.jsonl: when, which data and model, how it was trained and
    measured, and the headline scores with their intervals."""
    scores = {}
    for key, benchmark, cell, score in HEADLINES:
        found = headline(payload, benchmark, cell, score)
        if found is not None:
            scores[key] = {name: found.get(name) for name in KEPT if name in found}
    return {"date": payload["date"], "data": payload["data"], "data_revision": payload["data_revision"],
            "config": payload.get("config"), "control": payload.get("control"), "model": payload["model"],
            "steps": payload["steps"], "seeds": payload["seeds"], "tokens_per_run": payload.get("tokens_per_run"),
            "resamples": payload.get("resamples"), "perplexity": payload["perplexity"], "scores": scores,
            "tool_version": payload.get("tool_version")}


def _cell(row: dict, key: str) -> str:
    found = row["scores"].get(key)
    if not found:
        return "n/a"
    before, after = format_score(found.get("before")), format_score(found.get("after"))
    return f"{before} → {after} ({_signed(found.get('change'), found.get('change_ci'))})"


def _signed(value, ci=None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:+.2f}"
    return text if not ci else f"{text} [{ci[0]:+.1f}, {ci[1]:+.1f}]"


def history_table(rows: list[dict]) -> str:
    """One line per run, oldest first."""
    lines = ["| date | data revision | model | steps × seeds | control | StereoSet SS | CrowS-Pairs | "
             "SS effect vs control | held-out perplexity |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ss = row["scores"].get("stereoset_ss") or {}
        control = (row.get("control") or {}).get("data") or "none"
        ppl = (row.get("perplexity") or {}).get("data") or {}
        lines.append(f"| {row['date']} | `{str(row['data_revision'])[:12]}` | `{row['model']}` | "
                     f"{row['steps']} × {row['seeds']} | {control} | {_cell(row, 'stereoset_ss')} | "
                     f"{_cell(row, 'crows_pairs')} | {_signed(ss.get('effect'), ss.get('effect_ci'))} | "
                     f"{format_score(ppl.get('before'))} → {format_score(ppl.get('after'))} |")
    return "\n".join(lines)


def card_section(latest_markdown: str, rows: list[dict]) -> str:
    """The evaluation section: the latest run, the history table and the chart."""
    return "\n".join([latest_markdown.strip(), "", "### History of the evaluation", "",
                      f"Every `vdata eval report --push` adds a row to `{EVAL_HISTORY}`. Changes in brackets: "
                      "after - before with its 95% interval.", "", history_table(rows), "",
                      f"![StereoSet SS and CrowS-Pairs over dataset revisions]({EVAL_HISTORY_CHART})"])


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


def _read_text(hf_api, repo: str, path: str, revision: str) -> str | None:
    """The file's text at `revision`; None when the repo has no such file yet (a first run). Any
    other failure, an unreachable Hub included, is raised for hub.errors to translate."""
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        return Path(hf_api.hf_hub_download(repo, path, repo_type="dataset", revision=revision)).read_text(
            encoding="utf-8")
    except RemoteEntryNotFoundError:
        return None


def push_history(repo: str, payload: dict, markdown: str, token: str | None = None) -> str:
    """Append this run to the repo's history and rewrite the card's evaluation section, in one
    commit on the revision read; returns the commit URL."""
    from huggingface_hub import CommitOperationAdd

    from vdata_hub.eval.charts import history_chart
    from vdata_hub import hub

    hf_api = hub.api(token)
    with hub.errors(repo, token, "updating the evaluation history"):
        head = hub.main_sha(hf_api, repo, token)
        card = _read_text(hf_api, repo, CARD_FILE, head) or ""
        old = _read_text(hf_api, repo, EVAL_HISTORY, head) or ""
        rows = [json.loads(line) for line in old.splitlines() if line.strip()] + [history_row(payload)]
        chart = io.BytesIO()
        history_chart(rows, chart)
        operations = [
            CommitOperationAdd(CARD_FILE, replace_eval_section(card, card_section(markdown, rows)).encode()),
            CommitOperationAdd(EVAL_HISTORY, "".join(json.dumps(r) + "\n" for r in rows).encode()),
            CommitOperationAdd(EVAL_HISTORY_CHART, chart.getvalue())]
        commit = hf_api.create_commit(repo, repo_type="dataset", operations=operations, parent_commit=head,
                                      commit_message="Update the bias evaluation and its history (vdata eval report)")
    return commit.commit_url
