"""The dataset card: README.md rendered from dataset_card/README.md.j2, entirely from small files.

- counts, tokens and costs: the contributions' manifests, or for compacted contributions the summed
  manifests that their compaction record carries (so a refresh reads a few files per compaction,
  not one per contribution);
- balance statistics: the balance counts each manifest carries (computed by `contribute` from the
  contribution's rows, checked by `review`), summed (repo/balance.py, repo/stats.py);
- per month: rows added, contributions and generation cost (from the manifests' dates), and the
  repo's storage at the end of the month (recorded in the card at each refresh; months without a
  record are measured on the last commit of that month);
- where rows live: the YAML `configs:` (one `default` over everything, one per bias axis), and the
  archive records for rows moved to an archive repo.

The rows themselves are never read. The evaluation section is kept verbatim across refreshes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vdata_hub import DATASET_LICENSE, hub
from vdata_hub.config import resolve_repo
from vdata_hub.errors import HubError, VdataError
from vdata_hub.repo import balance, layout
from vdata_hub.repo.snapshot import Snapshot, read_json, read_text, snapshot
from vdata_hub.resources import CARD_DIR

EVAL_START = "<!-- vdata-eval:start -->"
EVAL_END = "<!-- vdata-eval:end -->"
EVAL_PLACEHOLDER = ("No evaluation yet. `vdata eval report --push` fine-tunes a small model on this data "
                    "(and on a control), scores StereoSet and CrowS-Pairs before and after, and writes the "
                    "results and their history here.")
STORAGE_MARK = "vdata-storage"
LICENSE = DATASET_LICENSE
NO_BALANCE = "No rows yet: the balance statistics appear here once contributions are merged."
SLIM_DROP = ("balance", "validation")  # manifest fields that compaction records do not repeat
PUSH_ATTEMPTS = 3  # main moved between reading the inputs and pushing: read again


@dataclass
class CardInputs:
    """What the card is made of, all read from small files of one commit."""

    manifests: list = field(default_factory=list)  # manifests without their bulky fields
    balance: dict = field(default_factory=balance.empty)  # summed balance counts
    rows_without_balance: int = 0  # rows of contributions whose manifest carries no balance counts
    archives: list = field(default_factory=list)  # archive records
    axes: list = field(default_factory=list)  # bias-axis folders under data/
    storage_bytes: int = 0  # size of the Parquet data at the commit
    files_read: int = 0  # small files downloaded to make the card


def render_template(name: str, **context) -> str:
    """Render one of the templates in dataset_card/ (undefined variables are errors)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(CARD_DIR)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(name).render(**context)


def eval_section(readme: str | None) -> str:
    """The text between the evaluation markers of an existing card, verbatim; a placeholder if none."""
    if readme:
        match = re.search(re.escape(EVAL_START) + r"(.*?)" + re.escape(EVAL_END), readme, re.S)
        if match:
            return match.group(1)
    return f"\n{EVAL_PLACEHOLDER}\n"


def slim(manifest: dict) -> dict:
    """A manifest without the fields the card does not sum per contribution."""
    return {key: value for key, value in manifest.items() if key not in SLIM_DROP}


def totals(manifests: list[dict]) -> dict:
    """Counts per axis, domain, task and model, tokens, cost, contributors, generator versions."""
    result = {key: Counter() for key in ("rows_per_axis", "rows_per_domain", "rows_per_task", "rows_per_model")}
    contributors, versions = Counter(), set()
    rows = input_tokens = output_tokens = 0
    cost = 0.0
    for manifest in manifests:
        for key in result:
            result[key].update(manifest.get(key, {}))
        rows += manifest.get("rows", 0)
        input_tokens += manifest.get("input_tokens", 0)
        output_tokens += manifest.get("output_tokens", 0)
        cost += manifest.get("cost_usd", 0.0)
        if manifest.get("contributor"):
            contributors[manifest["contributor"]] += manifest.get("rows", 0)
        versions.update(manifest.get("generator_versions", []))
    return {**{key: dict(counter.most_common()) for key, counter in result.items()},
            "rows": rows, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cost_usd": round(cost, 2), "contributions": len(manifests),
            "contributors": dict(contributors.most_common()), "generator_versions": sorted(versions)}


def monthly(manifests: list[dict], storage: dict | None = None) -> list[dict]:
    """Per month (of the manifests' dates): rows added, contributions, generation cost, and the
    storage recorded for that month ({"YYYY-MM": bytes}), oldest first."""
    months: dict[str, dict] = {}
    for manifest in manifests:
        month = str(manifest.get("created_at", ""))[:7] or "unknown"
        entry = months.setdefault(month, {"month": month, "rows": 0, "contributions": 0, "cost_usd": 0.0})
        entry["rows"] += manifest.get("rows", 0)
        entry["contributions"] += 1
        entry["cost_usd"] += manifest.get("cost_usd", 0.0)
    for month in storage or {}:
        months.setdefault(month, {"month": month, "rows": 0, "contributions": 0, "cost_usd": 0.0})
    for entry in months.values():
        entry["cost_usd"] = round(entry["cost_usd"], 2)
        entry["storage_bytes"] = (storage or {}).get(entry["month"])
    return [months[month] for month in sorted(months)]


def archived(archives: list[dict]) -> dict:
    """Rows moved out of main, per archive repo and axis."""
    result: dict = {"rows": 0, "repos": {}}
    for record in archives:
        repo = result["repos"].setdefault(record["archive_repo"], {"rows": 0, "rows_per_axis": Counter(),
                                                                     "tags": [], "moves": 0})
        repo["rows"] += record["rows"]
        repo["rows_per_axis"].update(record["rows_per_axis"])
        repo["tags"].append(record["tag"])
        repo["moves"] += 1
        result["rows"] += record["rows"]
    for repo in result["repos"].values():
        repo["rows_per_axis"] = dict(sorted(repo["rows_per_axis"].items()))
    return result


def render_card(repo: str, manifests: list[dict], axes: list[str], existing: str | None = None,
                balance_stats=None, inputs: CardInputs | None = None, storage: dict | None = None) -> str:
    """README.md text; `axes` are the bias-axis folders present under data/; `balance_stats`: the
    stats.DatasetStats of the rows the card describes (None: no rows yet); `inputs` the rest of what
    card_inputs read; `storage` {"YYYY-MM": bytes} for the monthly table."""
    from vdata_hub.repo.stats import stats_markdown

    inputs = inputs or CardInputs(manifests=manifests, axes=axes)
    t = totals(manifests)
    moved = archived(inputs.archives)
    storage = dict(storage or {})
    text = render_template(
        "README.md.j2", repo=repo, license=LICENSE, axes=sorted(axes), t=t, eval_start=EVAL_START,
        eval_end=EVAL_END, config_default=layout.config_pattern(),
        config_patterns={axis: layout.config_pattern(axis) for axis in sorted(axes)},
        balance=stats_markdown(balance_stats) if balance_stats is not None and balance_stats.rows else NO_BALANCE,
        rows_without_balance=inputs.rows_without_balance, months=monthly(manifests, storage),
        archive=moved, rows_on_main=t["rows"] - moved["rows"], storage_mark=STORAGE_MARK,
        storage_json=json.dumps(storage, sort_keys=True), eval_section=eval_section(existing),
        size_category=_size_category(t["rows"]), mib=_mib)
    check_card(text)
    return text


def _mib(size) -> str:
    return "–" if size is None else f"{size / 2**20:,.1f} MiB"


def check_card(text: str) -> None:
    """The card must parse with huggingface_hub's DatasetCard (YAML header, card data)."""
    from huggingface_hub import DatasetCard

    try:
        data = DatasetCard(text).data.to_dict()
    except Exception as exc:  # the card template is ours: a failure here is a bug worth a clear line
        raise VdataError(f"the rendered dataset card is invalid: {exc}") from None
    if not data.get("configs"):
        raise VdataError("the rendered dataset card has no `configs:`")


def _size_category(rows: int) -> str:
    for limit, name in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]:
        if rows < limit:
            return name
    return "10M<n<100M"


def card_inputs(hf_api, snap: Snapshot, token: str | None = None) -> CardInputs:
    """Manifests (via compaction records where they cover them), summed balance counts and archive
    records of the snapshot: a few small files per compaction plus one per recent contribution."""
    records = read_json(hf_api, snap, snap.compaction_records() + snap.archive_records(), token)
    inputs = CardInputs(axes=sorted(snap.shards_by_axis()), storage_bytes=snap.size(snap.shards()),
                        files_read=len(records))
    manifest_paths = snap.manifests()
    covered = set()
    for path in snap.compaction_records():
        record = records[path]
        fresh = [m for m in record.get("contributions", []) if m["contribution_id"] not in covered]
        if len(fresh) != len(record.get("contributions", [])):
            continue  # a record repeating another's contributions: its summed counts cannot be split
        for manifest in fresh:
            covered.add(manifest["contribution_id"])
        inputs.manifests += [m for m in fresh if m["contribution_id"] in manifest_paths]
        balance.merge(inputs.balance, record.get("balance") or balance.empty())
        inputs.rows_without_balance += record.get("rows_without_balance", 0)
    rest = [path for cid, path in manifest_paths.items() if cid not in covered]
    for manifest in read_json(hf_api, snap, rest, token).values():
        add_manifest(inputs, manifest)
    inputs.files_read += len(rest)
    inputs.archives = [records[path] for path in snap.archive_records()]
    return inputs


def add_manifest(inputs: CardInputs, manifest: dict) -> None:
    """Count one manifest into card inputs (its slim form, and its balance counts if it has them)."""
    inputs.manifests.append(slim(manifest))
    counts = manifest.get("balance")
    if counts:
        balance.merge(inputs.balance, counts)
    else:
        inputs.rows_without_balance += manifest.get("rows", 0)


def storage_record(readme: str | None) -> dict:
    """{"YYYY-MM": bytes} that earlier refreshes wrote into the card."""
    if readme:
        match = re.search(rf"<!-- {STORAGE_MARK}: (\{{.*?\}}) -->", readme)
        if match:
            try:
                return {str(k): int(v) for k, v in json.loads(match.group(1)).items()}
            except (ValueError, AttributeError):
                return {}
    return {}


def storage_by_month(hf_api, snap: Snapshot, readme: str | None, months: list[str], token: str | None) -> dict:
    """Bytes of Parquet data on main at the end of each month: what earlier refreshes recorded,
    this month's size now, and for months with contributions but no record, the size at that
    month's last commit (one listing per such month). The Hub's own storage figure also counts
    history and pull-request refs; it changes with every commit, the card included, so the card
    does not show it (docs/repo-layout.md)."""
    from datetime import datetime, timezone

    storage = storage_record(readme)
    current = datetime.now(timezone.utc).strftime("%Y-%m")
    if snap.shards():
        storage[current] = snap.size(snap.shards())
    missing = [month for month in months if month not in storage and month != "unknown" and month < current]
    if missing:
        with hub.errors(snap.repo, token, "reading the history for the storage per month"):
            last_commit = {}
            for commit in hf_api.list_repo_commits(snap.repo, repo_type="dataset", revision=snap.commit):
                month = commit.created_at.strftime("%Y-%m")
                last_commit.setdefault(month, commit.commit_id)  # newest first: the month's last commit
            for month in missing:
                earlier = [m for m in last_commit if m <= month]
                if earlier:
                    then = snapshot(hf_api, snap.repo, last_commit[max(earlier)], token)
                    storage[month] = then.size(then.shards())
    return storage


def card(repo: str | None = None, push: bool = False, token: str | None = None, output: str | None = None) -> str:
    """Render the card of `repo` from its manifests, compaction and archive records (never the
    rows); write it to `output`; with `push`, commit it to main (no commit when nothing changed;
    made again from the new state if main moved in between). Returns the card text."""
    repo = resolve_repo(repo)
    hf_api = hub.api(token)
    for attempt in range(PUSH_ATTEMPTS):
        snap = snapshot(hf_api, repo, "main", token)  # every input from the same commit
        text = card_text(hf_api, snap, token)
        if output:
            Path(output).write_text(text, encoding="utf-8")
        if not push or text == read_text(hf_api, snap, layout.CARD_FILE, token):
            return text
        try:
            with hub.errors(repo, token, "pushing the card"):
                hub.with_retries(lambda: hf_api.upload_file(
                    path_or_fileobj=text.encode(), path_in_repo=layout.CARD_FILE, repo_id=repo, repo_type="dataset",
                    commit_message="Refresh the dataset card", parent_commit=snap.commit))
            return text
        except HubError as exc:
            if "(412" not in str(exc) or attempt == PUSH_ATTEMPTS - 1:
                raise
    return text


def card_text(hf_api, snap: Snapshot, token: str | None = None, inputs: CardInputs | None = None) -> str:
    """The card of a snapshot (`inputs`: card_inputs of it, when the caller has them already)."""
    from vdata_hub.repo.stats import stats_from_counts

    inputs = inputs or card_inputs(hf_api, snap, token)
    existing = read_text(hf_api, snap, layout.CARD_FILE, token)
    months = sorted({str(m.get("created_at", ""))[:7] for m in inputs.manifests})
    storage = storage_by_month(hf_api, snap, existing, months, token)
    counts = inputs.balance
    balance_stats = stats_from_counts(counts, dataset=snap.repo, revision=snap.commit) if counts["rows"] else None
    return render_card(snap.repo, inputs.manifests, inputs.axes, existing, balance_stats, inputs, storage)


def init_repo(repo: str, token: str | None = None, private: bool = False) -> str:
    """Create a vdata dataset repo: the card (configs for every axis once data arrives) and a
    .gitattributes storing Parquet through LFS, in one commit. Returns the repo URL."""
    from huggingface_hub import CommitOperationAdd

    if repo.count("/") != 1:
        raise VdataError(f"{repo!r}: expected NAMESPACE/NAME, e.g. my-org/vdata")
    hf_api = hub.api(token)
    text = render_card(repo, [], [])
    gitattributes = (CARD_DIR / "gitattributes.txt").read_text(encoding="utf-8")
    with hub.errors(repo, token, "creating the repo"):
        if hub.repo_exists(hf_api, repo, token):
            raise VdataError(f"{repo} already exists; refresh its card with `vdata card --repo {repo} --push`")
        url = hf_api.create_repo(repo, repo_type="dataset", private=private)
        hub.with_retries(lambda: hf_api.create_commit(
            repo, [CommitOperationAdd(layout.CARD_FILE, text.encode()),
                   CommitOperationAdd(".gitattributes", gitattributes.encode())],
            commit_message="Create the vdata dataset repo", repo_type="dataset"))
    return str(url)
