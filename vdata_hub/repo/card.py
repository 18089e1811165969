"""The dataset card: README.md rendered from dataset_card/README.md.j2 with the repo's totals
(from the small contributions/*.json manifests, never the data), YAML `configs:` (one `default`
over everything, one per bias axis), the balance statistics of the rows on main (vdata_hub.repo.stats,
the one place that reads the data), and the evaluation section kept verbatim across refreshes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from vdata_hub import DATASET_LICENSE, hub
from vdata_hub.config import resolve_repo
from vdata_hub.errors import HubError, VdataError
from vdata_hub.repo import layout
from vdata_hub.resources import CARD_DIR

EVAL_START = "<!-- vdata-eval:start -->"
EVAL_END = "<!-- vdata-eval:end -->"
EVAL_PLACEHOLDER = ("No evaluation yet. `vdata eval report --push` fine-tunes a small model on this data, "
                    "scores StereoSet before and after, and writes the results here.")
LICENSE = DATASET_LICENSE
NO_BALANCE = "No rows yet: the balance statistics appear here once contributions are merged."


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


def render_card(repo: str, manifests: list[dict], axes: list[str], existing: str | None = None,
                balance=None) -> str:
    """README.md text; `axes` are the bias-axis folders present under data/; `balance`: the
    stats.DatasetStats of the rows the card describes (None: no rows yet)."""
    from vdata_hub.repo.stats import stats_markdown

    text = render_template("README.md.j2", repo=repo, license=LICENSE, axes=sorted(axes),
                           t=totals(manifests), eval_start=EVAL_START, eval_end=EVAL_END,
                           balance=stats_markdown(balance) if balance is not None and balance.rows else NO_BALANCE,
                           eval_section=eval_section(existing), size_category=_size_category(
                               sum(m.get("rows", 0) for m in manifests)))
    check_card(text)
    return text


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


def read_repo_state(hf_api, repo: str, token: str | None, revision: str = "main") -> tuple[list, list, str | None]:
    """(manifests, axes, current README text) at `revision`."""
    from huggingface_hub.errors import RemoteEntryNotFoundError

    with hub.errors(repo, token, "reading the card's inputs"):
        files = [entry.path for entry in hf_api.list_repo_tree(repo, recursive=True, repo_type="dataset",
                                                               revision=revision) if hasattr(entry, "size")]
        axes = sorted(layout.shards_by_axis(files))
        manifests = []
        for path in sorted(p for p in files if layout.manifest_id(p)):
            local = hf_api.hf_hub_download(repo, path, repo_type="dataset", revision=revision)
            try:
                manifests.append(json.loads(Path(local).read_text(encoding="utf-8")))
            except ValueError:
                raise HubError(f"{path} on {repo} is not valid JSON; fix or remove it") from None
        try:
            readme = Path(hf_api.hf_hub_download(repo, layout.CARD_FILE, repo_type="dataset",
                                                 revision=revision)).read_text(encoding="utf-8")
        except RemoteEntryNotFoundError:  # not LocalEntryNotFoundError: a Hub that cannot be reached is an error
            readme = None
    return manifests, axes, readme


def balance_stats(repo: str, revision: str, token: str | None = None):
    """Balance statistics of the rows at `revision` (reads the text and label columns of every
    shard: the only part of the card that reads the data), or None when there are no shards."""
    from vdata_hub.repo.stats import stats

    result = stats(repo, revision=revision, token=token)
    return result if result.rows else None


def card(repo: str | None = None, push: bool = False, token: str | None = None, output: str | None = None) -> str:
    """Render the card of `repo` from its manifests and the balance statistics of its rows; write
    it to `output`; with `push`, commit it to main (no commit when nothing changed). Returns the
    card text."""
    repo = resolve_repo(repo)
    hf_api = hub.api(token)
    revision = hub.main_sha(hf_api, repo, token)  # manifests, rows and card from the same commit
    manifests, axes, existing = read_repo_state(hf_api, repo, token, revision)
    balance = balance_stats(repo, revision, token) if axes else None
    text = render_card(repo, manifests, axes, existing, balance)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    if push and text != existing:
        with hub.errors(repo, token, "pushing the card"):
            hub.with_retries(lambda: hf_api.upload_file(path_or_fileobj=text.encode(), path_in_repo="README.md",
                                                        repo_id=repo, repo_type="dataset",
                                                        commit_message="Refresh the dataset card",
                                                        parent_commit=revision))
    return text


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
            repo, [CommitOperationAdd("README.md", text.encode()),
                   CommitOperationAdd(".gitattributes", gitattributes.encode())],
            commit_message="Create the vdata dataset repo", repo_type="dataset"))
    return str(url)
