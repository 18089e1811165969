"""Command line: parsing and printing only; every command calls the library function of the
same name. fire makes the calls; cli_args checks and types the command line before it and writes
the help. Heavy libraries are imported inside the commands so `--help` stays instant."""

from __future__ import annotations

import os
import sys

from vdata_hub import cli_args
from vdata_hub.errors import PartlyDone, VdataError

COMMAND_ALIASES = {"gen": "generate"}
# The original design's short flags: (parameter, value a shorthand carries or None).
SHORT_FLAGS = {
    "generate": {"-k": ("api_key", None), "-n": ("num_records", None), "-q": ("quiet", None)},
    "estimate": {"-n": ("num_records", None)},
    "batch status": {"-k": ("api_key", None)},
    "batch cancel": {"-k": ("api_key", None)},
    "contribute": {"-q": ("quiet", None)},
    "review": {"-q": ("quiet", None)},
    "pull": {"-j": ("format", "json"), "-t": ("format", "text"), "-c": ("format", "csv"),
             "-p": ("format", "parquet"), "-q": ("quiet", None)},
}
LONG_ALIASES = {"generate": {"--apikey": "api_key"}}
_parsed: cli_args.Parsed | None = None  # this process's command line, so notes name its flags


class Eval:
    """Bias evaluation: StereoSet, CrowS-Pairs, fine-tuning, and a before/after report.

    Examples:
      vdata eval stereoset --model gpt2 --output results/
      vdata eval crows-pairs --model gpt2 --output crows/
      vdata eval finetune --model gpt2 --data org/vdata --output ft/ --max-steps 200
      vdata eval report --model gpt2 --data org/vdata --push
    """

    def stereoset(self, *, model: str = "gpt2", data: str | None = None, predictions: str | None = None,
                  output: str = "stereoset-results", batch_size: int = 32, device: str | None = None,
                  max_examples: int | None = None, shard: str | None = None, resamples: int = 1000,
                  quiet: bool = False):
        """Score a causal LM on StereoSet (both tasks) with the official rules.

        Intrasentence follows StereoSet's official causal-LM scorer; intersentence scores each
        candidate by its mean log-probability given the context (the official GPT-2 numbers used
        an unpublished classifier head). Writes results.json (official layout), predictions.json
        (official format), scores.jsonl, results.md, ss_by_domain.png and run.json.

        Examples:
          vdata eval stereoset --model gpt2 --output results/
          vdata eval stereoset --model local --data dev.json --max-examples 200
          vdata eval stereoset --predictions predictions.json --data dev.json
          vdata eval stereoset --model local --data dev.json --shard 0/4 --output part0  # 1 of 4 pieces
          vdata eval stereoset --predictions part0/predictions.json,part1/predictions.json,... --data dev.json

        Args:
          model: Hub id or local path loadable by transformers; `local` for the embedded SmolLM2.
          data: StereoSet JSON file in the original layout; default: McGill-NLP/stereoset from the Hub.
          predictions: score this predictions file (or several, joined by commas) instead of running a model.
          output: folder for results.json, predictions.json, scores, a markdown table and a chart.
          batch_size: sentences per forward pass.
          device: cpu, cuda, ...; default: a GPU when present.
          max_examples: evaluate only the first N examples of each task (for quick runs).
          shard: I/K (or I,J/K) scores only the examples at positions I (J) modulo K of each task,
            to split a long run into pieces; score the pieces' predictions together afterwards.
          resamples: bootstrap resamples for the 95% intervals (seed 0); 0 for none.
          quiet: no progress bar, no summary.
        """
        from vdata_hub.eval.stereoset_run import run_stereoset

        result = run_stereoset(model=model, data=data, predictions=predictions, output=output,
                               batch_size=batch_size, device=device, max_examples=max_examples,
                               progress=_progress(quiet), shard=shard, resamples=resamples)
        _print_summary(result, quiet)

    def crows_pairs(self, *, model: str = "gpt2", data: str | None = None, output: str = "crows-pairs-results",
                    max_examples: int | None = None, bias_type: str | None = None, batch_size: int = 32,
                    device: str | None = None, resamples: int = 1000, quiet: bool = False):
        """Score a causal LM on CrowS-Pairs (bias-bench's rule for generative models).

        A pair counts for the stereotype when its more stereotypical sentence has the higher mean
        token log-probability. Writes results.json, scores.jsonl, results.md, crows_pairs.png and
        run.json; every score with a 95% bootstrap interval.

        Examples:
          vdata eval crows-pairs --model gpt2 --output crows/
          vdata eval crows-pairs --model local --data crows_pairs_anonymized.csv --bias-type gender

        Args:
          model: Hub id or local path loadable by transformers; `local` for the embedded SmolLM2.
          data: CrowS-Pairs CSV (the public layout); default: nyu-mll/crows_pairs from the Hub.
          output: folder for the results.
          max_examples: score only the first N pairs (of --bias-type, if given).
          bias_type: one bias type (race-color, gender, age, ...); default: all nine.
          batch_size: sentences per forward pass.
          device: cpu, cuda, ...; default: a GPU when present.
          resamples: bootstrap resamples for the intervals (seed 0); 0 for none.
          quiet: no progress bar, no summary.
        """
        from vdata_hub.eval.crows_pairs_run import run_crows_pairs

        result = run_crows_pairs(model=model, data=data, output=output, max_examples=max_examples,
                                 bias_type=bias_type, batch_size=batch_size, device=device,
                                 progress=_progress(quiet), resamples=resamples)
        _print_summary(result, quiet)

    def finetune(self, *, model: str = "gpt2", data: str = "org/vdata", output: str = "finetuned",
                 config: str | None = None, revision: str | None = None, max_steps: int = 200,
                 learning_rate: float = 5e-5, block_size: int = 256, batch_size: int = 8,
                 eval_fraction: float = 0.05, resume: bool = True, device: str | None = None, quiet: bool = False):
        """Fine-tune a causal LM on the texts of a vdata dataset (Hub repo or local folder).

        Checkpoints go to OUTPUT/checkpoints and the same command resumes from the last one
        (--noresume starts over); the model is saved to OUTPUT/final.

        Examples:
          vdata eval finetune --model gpt2 --data org/vdata --output ft/ --max-steps 200
          vdata eval finetune --model local --data ./vdata-out --output ft/ --max-steps 20

        Args:
          model: Hub id or local path loadable by transformers; `local` for the embedded SmolLM2.
          data: Hub dataset repo or a folder written by `vdata generate`.
          output: folder for checkpoints, the final model and finetune.json.
          config: one config of the Hub dataset (a bias axis); default: all data.
          revision: Hub branch, tag or commit of the data.
          max_steps: optimizer steps in all (a resumed run continues up to this number).
          learning_rate: peak learning rate (linear decay).
          block_size: tokens per training block.
          batch_size: blocks per step.
          eval_fraction: share of the texts held out for perplexity.
          resume: continue from the last checkpoint in OUTPUT/checkpoints.
          device: cpu or cuda; default: a GPU when present.
          quiet: no progress bar, no summary.
        """
        from vdata_hub.eval.finetune import finetune

        result = finetune(model=model, data=data, output=output, config=config, revision=revision,
                          max_steps=max_steps, learning_rate=learning_rate, block_size=block_size,
                          batch_size=batch_size, eval_fraction=eval_fraction, resume=resume, device=device,
                          progress=_progress(quiet))
        _print_summary(result, quiet)

    def report(self, *, model: str = "gpt2", data: str = "org/vdata", output: str = "eval-report",
               stereoset: str | None = None, crows_pairs: str | None = None, max_steps: int = 200,
               max_examples: int | None = None, repo: str | None = None, push: bool = False,
               token: str | None = None, device: str | None = None, quiet: bool = False, config: str | None = None,
               revision: str | None = None, learning_rate: float = 5e-5, block_size: int = 256,
               batch_size: int = 8, reuse: bool = False, control: str | None = None, seeds: int = 1,
               resamples: int = 1000):
        """StereoSet and CrowS-Pairs before and after fine-tuning, with intervals; --push into the card.

        Writes JSON, markdown and a chart. Run it on a schedule (docs/eval.md has a CI workflow).
        --control fine-tunes on a control dataset too (same steps and tokens) and reports the effect
        of the data beyond it; --seeds repeats each fine-tuning. --push appends the run to
        eval/history.jsonl in the dataset repo and rewrites the card's evaluation section (latest
        run, history table, chart).

        Examples:
          vdata eval report --model gpt2 --data org/vdata --push
          vdata eval report --model local --data ./vdata-out --control ./control-out --seeds 3 --max-steps 200
          vdata eval report --model local --data ./vdata-out --stereoset dev.json --crows-pairs crows.csv

        Args:
          model: Hub id or local path loadable by transformers; `local` for the embedded SmolLM2.
          data: Hub dataset repo or a folder written by `vdata generate`.
          output: folder for report.json, report.md, report.png and the runs behind them.
          stereoset: StereoSet JSON file; default: McGill-NLP/stereoset from the Hub.
          crows_pairs: CrowS-Pairs CSV file; default: nyu-mll/crows_pairs from the Hub.
          max_steps: fine-tuning steps per run.
          max_examples: evaluate only the first N examples (per StereoSet task; CrowS-Pairs pairs).
          repo: dataset repo whose card --push updates; default: DATA when it is a Hub repo.
          push: append the run to the repo's history and write the card's evaluation section.
          token: Hub token with write access (default HF_TOKEN or `hf auth login`).
          device: cpu or cuda; default: a GPU when present.
          quiet: no progress bars, no summary.
          config: one config of the Hub dataset (a bias axis); default: all data.
          revision: Hub branch, tag or commit of the data.
          learning_rate: peak learning rate of the fine-tuning (linear decay).
          block_size: tokens per training block.
          batch_size: blocks per fine-tuning step.
          reuse: read the stages already finished in OUTPUT (before/, ARM-seedS/) instead of running
            them again, e.g. after running them one by one or in --shard pieces.
          control: a dataset of the same kind without the de-biasing instructions (spec control-small).
          seeds: fine-tuning seeds per arm.
          resamples: bootstrap resamples for the intervals (seed 0).
        """
        from vdata_hub.eval.report import report

        result = report(model=model, data=data, output=output, stereoset=stereoset, crows_pairs=crows_pairs,
                        max_steps=max_steps, max_examples=max_examples, repo=repo, push=push, token=token,
                        device=device, progress=_progress(quiet), config=config, revision=revision,
                        learning_rate=learning_rate, block_size=block_size, batch_size=batch_size, reuse=reuse,
                        control=control, seeds=seeds, resamples=resamples)
        _print_summary(result, quiet)


class Batch:
    """The provider batches of a `vdata gen OUT SPEC --batch` run: see them, or cancel them.

    Examples:
      vdata batch status out/
      vdata batch cancel out/ -k $OPENAI_API_KEY
    """

    def status(self, out: str = "vdata-out", *, api_key: str | None = None):
        """Show each batch of OUT with the provider's status and the requests answered so far.

        Args:
          out: the output folder of a `vdata gen ... --batch` run.
          api_key: API key; else $APIKEY, else the provider's variable.
        """
        from vdata_hub.generation.batch import batch_status

        print(batch_status(out=out, api_key=api_key).summary())

    def cancel(self, out: str = "vdata-out", *, api_key: str | None = None):
        """Ask the provider to cancel every batch of OUT not collected yet.

        What they answered before stopping is kept: the next `vdata gen OUT SPEC --batch`
        collects it and sends the rest again.

        Args:
          out: the output folder of a `vdata gen ... --batch` run.
          api_key: API key; else $APIKEY, else the provider's variable.
        """
        from vdata_hub.generation.batch import batch_cancel

        cancelled = batch_cancel(out=out, api_key=api_key)
        print(f"asked the provider to cancel {len(cancelled)} batch{'es' if len(cancelled) != 1 else ''}"
              + (": " + ", ".join(cancelled) if cancelled else ""))


class Commands:
    """Generate low-bias synthetic training data with any LLM and share it on the Hugging Face Hub.

    `python -m vdata_hub` is the same as `vdata`.

    Examples:
      vdata gen                                  # demo spec, embedded local model, no key needed
      vdata gen out/ my-spec.yaml -k $OPENAI_API_KEY --model gpt-4o-mini
      vdata contribute out/                      # open a pull request on the Hub dataset
      vdata pull rows.jsonl --config gender --limit 1000
      vdata pull rows.csv --sql "SELECT text FROM vdata WHERE domain = 'healthcare'"
    """

    def generate(self, out: str = "vdata-out", spec: str = "demo", *, model: str | None = None,
                 api_base: str | None = None, num_records: int | None = None, concurrency: int | None = None,
                 max_cost: float | None = None, api_key: str | None = None, dry_run: bool = False,
                 quiet: bool = False, no_donate_prompt: bool = False, batch: bool = False, wait: bool = False,
                 workers: int | None = None):
        """Generate records from a spec with any LLM into an Arrow dataset at OUT.

        Every call goes through LiteLLM, so any provider it supports works; with no model given,
        the embedded SmolLM2-135M-Instruct runs on this machine. Resumable: run the same command again after a stop and it continues where it stopped.

        --batch sends the same requests through the provider's batch API (OpenAI and compatible
        servers, Anthropic, Gemini) at about half the price, answered within 24 hours: it submits
        and returns; the same command again collects what has finished and resubmits what failed
        (--wait stays until every batch has ended). `vdata batch status|cancel OUT` see or stop them.

        Exit status: 0 every record made; 6 partly done (some records failed after their retries:
        see OUT/failures.jsonl, run the same command again to retry them); 4 cost cap reached;
        3 API key refused; 7 the model's endpoint cannot be reached; 2 bad spec or option; 1 other.

        Examples:
          vdata gen                                   # ./vdata-out from the `demo` spec, embedded model
          vdata gen out/ balanced-small -k $OPENAI_API_KEY --model gpt-4o-mini
          vdata gen out/ spec.yaml --model openai/my-model --api-base http://localhost:8000/v1
          vdata gen out/ full --dry-run               # planned requests, tokens, USD, bytes; no calls
          vdata gen out/ full --model gpt-4o-mini --batch          # half price; run it again to collect
          vdata gen out/ spec.yaml --concurrency 512 --workers 4  # LiteLLM's work on 4 cores

        Args:
          out: folder to write the dataset to.
          spec: spec file (JSON or YAML) or a shipped spec name: demo, balanced-small, full.
          model: LiteLLM model string, `local` or `local:PATH.gguf`; overrides the spec.
          api_base: base URL of an OpenAI-compatible server; overrides the spec.
          num_records: number of records; overrides the spec.
          concurrency: requests in flight at most; overrides the spec.
          max_cost: stop cleanly once this many USD are spent; overrides the spec.
          api_key: API key; else $APIKEY, else the provider's variable (OPENAI_API_KEY, ...).
          dry_run: print the plan and cost estimate without calling any model.
          quiet: print only errors.
          no_donate_prompt: do not ask to contribute or show the support message after the run.
          batch: send the requests through the provider's batch API, answered within 24 hours, priced at
            LiteLLM's batch price (else 50% of the real-time price; --dry-run shows which).
          wait: with --batch, wait with a progress bar until every batch has ended and is collected.
          workers: processes that send the LLM requests, so LiteLLM's CPU per call spreads over
            cores (default: one per 32 requests of concurrency, at most one per CPU; 0: none,
            this process sends them).
        """
        from vdata_hub.generation.generate import generate

        result = generate(out=out, spec=spec, model=model, api_base=api_base, num_records=num_records,
                          concurrency=concurrency, max_cost=max_cost, api_key=api_key, dry_run=dry_run,
                          progress=_progress(quiet), batch=batch, wait=wait,
                          workers=workers)
        if dry_run:  # the estimate is what was asked for, so --quiet still prints it
            from vdata_hub.generation.cost import format_estimate

            print(format_estimate(result))
        elif not quiet:
            print(result.summary())
            if not no_donate_prompt and sys.stdin.isatty():
                after_run_prompt(out, result)
        if not dry_run and result.failed:
            raise PartlyDone(f"{result.failed:,} of {result.requested:,} records failed after their retries "
                             f"(see {os.path.join(out, 'failures.jsonl')}); run the same command again to retry them")

    def estimate(self, spec: str = "demo", *, model: str | None = None, num_records: int | None = None):
        """Print a spec's planned requests, tokens, USD and output size; calls no model.

        Prices come from LiteLLM's price map; output tokens are an upper bound (max_tokens for
        every request). Same figures as `vdata gen OUT SPEC --dry-run`.

        Examples:
          vdata estimate                              # the demo spec, embedded model: $0
          vdata estimate full --model gpt-4o
          vdata estimate my-spec.yaml --model gemini/gemini-2.5-flash -n 10000

        Args:
          spec: spec file (JSON or YAML) or a shipped spec name: demo, balanced-small, full.
          model: LiteLLM model string to price instead of the spec's.
          num_records: number of records; overrides the spec.
        """
        from vdata_hub.generation.cost import estimate, format_estimate

        print(format_estimate(estimate(spec=spec, model=model, num_records=num_records)))

    def contribute(self, out: str = "vdata-out", *, repo: str | None = None, token: str | None = None,
                   part: str | None = None, dry_run: bool = False, quiet: bool = False):
        """Validate a generated dataset and open a pull request adding it to the Hub.

        The PR's single commit adds data/<bias_axis>/contributed/<id>.parquet shards and a manifest;
        the id is a hash of the rows, so contributing the same data twice opens no second PR.
        Contributed rows are released under CC0-1.0 (public domain), like the rest of the dataset;
        generated text may also fall under your model provider's terms of use.

        Examples:
          vdata contribute out/
          vdata contribute out/ --part 0.25            # a fraction
          vdata contribute out/ --part 500             # a count
          vdata contribute out/ --part bias_axis=gender --dry-run

        Args:
          out: the folder `generate` wrote.
          repo: Hub dataset repo (default $VDATA_REPO, the config file, else org/vdata).
          token: Hub token (default HF_TOKEN or `hf auth login`).
          part: a fraction (0.25), a count (500) or a filter (bias_axis=gender, domain=a|b).
          dry_run: validate and show what would be uploaded, without uploading.
          quiet: print only errors and the PR URL.
        """
        from vdata_hub import DATASET_LICENSE_URL
        from vdata_hub.repo.contribute import contribute

        if not dry_run and not quiet:
            _note(WHAT_CONTRIBUTORS_AGREE_TO.format(url=DATASET_LICENSE_URL))
        result = contribute(out=out, repo=repo, token=token, part=part, dry_run=dry_run, progress=_progress(quiet))
        print(result.pr_url if quiet and result.pr_url else result.summary())

    def review(self, *, repo: str | None = None, pr: int | None = None, merge: bool = False,
               close_invalid: bool = False, token: str | None = None, quiet: bool = False,
               compact_threshold: int | None = None):
        """Maintainers: check open contribution PRs, comment, merge or close them.

        Runs the contribute checks again (rejecting personal data instead of scrubbing it) plus
        duplicates and near duplicates of the current main (through its duplicate index); a merge
        also adds the PR's rows to the index; after merges, compacts main when an axis holds
        --compact-threshold contributed shards (default 200; 0: never) and refreshes the card.

        Examples:
          vdata review                          # comment on every open PR
          vdata review --pr 3 --merge
          vdata review --merge --close-invalid

        Args:
          repo: Hub dataset repo (default $VDATA_REPO, the config file, else org/vdata).
          pr: review only this pull request (its number).
          merge: merge the pull requests that pass.
          close_invalid: close the pull requests that fail.
          token: Hub token with write access (default HF_TOKEN or `hf auth login`).
          quiet: print only errors.
          compact_threshold: after merges, compact main when an axis holds this many contributed
            shards (default 200; 0: never).
        """
        from vdata_hub.repo.review import review

        results = review(repo=repo, pr=pr, merge=merge, close_invalid=close_invalid, token=token,
                         progress=_progress(quiet), compact_threshold=compact_threshold)
        if not quiet:
            print("\n".join(result.summary() for result in results) or "no open pull requests")

    def reindex(self, *, repo: str | None = None, token: str | None = None, quiet: bool = False):
        """Maintainers: rebuild the repo's duplicate index from the text of every shard on main.

        contribute and review find duplicates and near duplicates of main through the index under
        index/; they stop with "run `vdata reindex`" when it is missing or does not cover every
        contribution on main (a repo made by hand, a merge done on the website). One commit
        replaces the whole index; an interrupted run leaves main as it was.

        Examples:
          vdata reindex --repo me/vdata

        Args:
          repo: Hub dataset repo (default $VDATA_REPO, the config file, else org/vdata).
          token: Hub token with write access (default HF_TOKEN or `hf auth login`).
          quiet: print only errors.
        """
        from vdata_hub.repo.reindex import reindex

        result = reindex(repo=repo, token=token, progress=_progress(quiet))
        if not quiet:
            print(result.summary())

    def compact(self, *, repo: str | None = None, target_mb: float = 256, direct: bool = False,
                dry_run: bool = False, token: str | None = None, quiet: bool = False):
        """Maintainers: rewrite the small shards of each bias axis into large ones, in one commit.

        Every row is kept exactly once with its id (checked by id and text hash before the
        commit); load_dataset(REPO) and load_dataset(REPO, AXIS) return the same rows before and
        after. The commit opens a pull request, or goes straight to main with --direct.

        Examples:
          vdata compact --repo my-org/vdata --dry-run
          vdata compact --repo my-org/vdata --direct
          vdata compact --repo my-org/vdata --target-mb 512

        Args:
          repo: Hub dataset repo (default $VDATA_REPO, the config file, else org/vdata).
          target_mb: size of the compacted shards, in MiB.
          direct: commit to main instead of opening a pull request.
          dry_run: list the shards that would be compacted; change nothing.
          token: Hub token with write access (default HF_TOKEN or `hf auth login`).
          quiet: no progress bar, only the summary.
        """
        from vdata_hub.repo.compact import compact

        result = compact(repo=repo, target_bytes=int(float(target_mb) * 2**20), direct=direct, dry_run=dry_run,
                         token=token, progress=_progress(quiet))
        print(result.summary())

    def archive(self, *, repo: str | None = None, to: str | None = None, before: str | None = None,
                axis: str | None = None, contributions: str | None = None, dry_run: bool = False,
                token: str | None = None, quiet: bool = False):
        """Maintainers: move chosen shards of the dataset to an archive dataset repo, never losing a row.

        One commit on the archive repo (created if needed), a check of every moved row by id and
        text hash, a tag on main at the state before the move, then one commit on main. If it is
        interrupted, running the same command again finishes the move. The cards of both repos say
        what lives where; `vdata pull --include-archive` and `vdata stats REPO --include-archive`
        read both.

        Examples:
          vdata archive --repo my-org/vdata --to my-org/vdata-archive --before 2026-01-01
          vdata archive --repo my-org/vdata --to my-org/vdata-archive --axis age --dry-run
          vdata archive --repo my-org/vdata --to my-org/vdata-archive --contributions 0123456789abcdef

        Args:
          repo: Hub dataset repo (default $VDATA_REPO, the config file, else org/vdata).
          to: the archive dataset repo.
          before: shards whose contributions are all older than this date (YYYY-MM-DD).
          axis: shards of this bias axis.
          contributions: shards of these contribution ids (comma-separated).
          dry_run: list the shards that would move; change nothing.
          token: Hub token with write access to both repos (default HF_TOKEN or `hf auth login`).
          quiet: print only the summary.
        """
        from vdata_hub.repo.archive import archive

        result = archive(repo=repo, to=to, before=before, axis=axis, contributions=contributions, dry_run=dry_run,
                         token=token, progress=_progress(quiet))
        print(result.summary())

    def card(self, *, repo: str | None = None, push: bool = False, token: str | None = None,
             output: str | None = None):
        """Render the dataset card from the repo's contents; --push commits it.

        Counts, tokens and cost come from the contributions' manifests; the balance statistics
        from the rows on main; the evaluation section is kept as `vdata eval report --push` wrote it.

        Examples:
          vdata card                            # print the card for org/vdata
          vdata card --repo me/vdata --push
          vdata card --output README.md

        Args:
          repo: Hub dataset repo (default $VDATA_REPO, the config file, else org/vdata).
          push: commit the card to the repo's main branch (no commit when nothing changed).
          token: Hub token; with --push, one with write access (default HF_TOKEN or `hf auth login`).
          output: write the card to this file instead of printing it.
        """
        from vdata_hub.repo.card import card

        text = card(repo=repo, push=push, token=token, output=output)
        if not push and output is None:
            print(text)

    def init_repo(self, repo: str, *, token: str | None = None, private: bool = False):
        """Create a new vdata dataset repo on the Hub.

        One commit adds the dataset card (with a config per bias axis once data arrives) and a
        .gitattributes that stores Parquet through LFS.

        Examples:
          vdata init-repo my-org/vdata
          vdata init-repo me/vdata-test --private

        Args:
          repo: the new dataset repo, NAMESPACE/NAME.
          token: Hub token with write access (default HF_TOKEN or `hf auth login`).
          private: create a private repo.
        """
        from vdata_hub.repo.card import init_repo

        print(init_repo(repo=repo, token=token, private=private))

    def pull(self, out: str, *, format: str | None = None, repo: str | None = None, revision: str | None = None,
             config: str | None = None, limit: int | None = None, sql: str | bool | None = None,
             token: str | None = None, timeout: float = 600, max_size: str = "1GB", quiet: bool = False,
             include_archive: bool = False):
        """Export rows of the Hub dataset, or a read-only SQL query's result, to a file.

        JSON Lines, text, CSV or Parquet. Reads only the Parquet row groups and columns the selection needs, straight from the Hub.
        SQL sees the dataset as table `vdata` (and one view per bias-axis config, e.g. `gender`);
        one query only, no file readers, no writes (see docs/pull.md).
        Columns: id, text, prompt, system_prompt, template, template_sha, variables, bias_axis,
        domain, task, group, model, params, input_tokens, output_tokens, cost_usd, finish_reason,
        created_at, generator_version, spec_sha, augmented, source_id, plan_key, flags, text_hash.
        `id` is unique in the dataset (from the text hash); `plan_key` is the spec's key for the
        record (the same for everyone who runs the same spec); `source_id` is the id of the row
        an augmented row was made from.
        Text output (-t): one text per line, backslash written as \\\\, newline as \\n, CR as \\r.

        Examples:
          vdata pull rows.jsonl --config gender --limit 1000
          vdata pull texts.txt -t --revision refs/pr/3
          vdata pull out.csv --sql "SELECT domain, count(*) AS n FROM vdata GROUP BY domain"
          vdata pull out.parquet --sql                # opens $EDITOR on an example query

        Args:
          out: output file; format from -j/-t/-c/-p or from its extension (.jsonl .txt .csv .parquet).
          format: json, text, csv or parquet.
          repo: Hub dataset repo (default $VDATA_REPO, the config file, else org/vdata).
          revision: branch, tag, commit or refs/pr/N.
          config: one bias axis.
          limit: at most this many rows.
          sql: a read-only query; with no statement, opens $EDITOR (vi when unset).
          token: Hub token (default HF_TOKEN or `hf auth login`).
          timeout: stop the query after this many seconds.
          max_size: stop a result larger than this (500MB, 2GB, ...; 0 for no limit); no file is left.
          quiet: print only errors.
          include_archive: also the rows moved to archive repos by `vdata archive`.
        """
        from vdata_hub.query.pull import pull

        result = pull(out=out, format=format, repo=repo, revision=revision, config=config, limit=limit, sql=sql,
                      token=token, timeout=timeout, max_size=max_size, progress=_progress(quiet),
                      include_archive=include_archive)
        if not quiet:
            print(result.summary(), file=sys.stderr)

    def stats(self, dataset: str = "vdata-out", *, json: bool = False, chart: str | None = None,
              revision: str | None = None, threshold: float | None = None, token: str | None = None,
              include_archive: bool = False):
        """Balance statistics of a dataset or Hub repo: group mentions, pronouns, coverage.

        Also lengths, refusal rate and duplicates; imbalances are flagged when the largest count of a
        distribution (group mentions within an axis, rows per group, rows per axis, he vs she) is more
        than THRESHOLD times the smallest.

        Examples:
          vdata stats vdata-out
          vdata stats org/vdata --json
          vdata stats org/vdata --revision refs/pr/3 --threshold 1.5
          vdata stats vdata-out --chart balance.png

        Args:
          dataset: a folder written by `vdata generate`, or a Hub dataset repo id (namespace/name).
          json: print every figure as JSON instead of a table.
          chart: also write a PNG bar chart of group mentions per axis to this path.
          revision: Hub branch, tag, commit or refs/pr/N (Hub repos only).
          threshold: max/min ratio above which a distribution is flagged as imbalanced (default 2).
          token: Hub token for a private repo (default HF_TOKEN or `hf auth login`).
          include_archive: for a Hub repo, also the rows it moved to archive repos (`vdata archive`).
        """
        from vdata_hub.repo.stats import format_stats, stats

        result = stats(dataset=dataset, revision=revision, chart=chart, threshold=threshold, token=token,
                       include_archive=include_archive)
        print(format_stats(result, as_json=json))

    eval = Eval()
    batch = Batch()


SUPPORT_URL = "https://huggingface.co/datasets/org/vdata/discussions"
WHAT_CONTRIBUTORS_AGREE_TO = (
    "Contributed rows are released under CC0-1.0, a public-domain dedication ({url}): anyone may use "
    "them for anything, without attribution. Generated text may also fall under your model provider's "
    "terms of use.")


def after_run_prompt(out: str, summary, ask=input, say=print) -> None:
    """The original design's flow: offer to contribute the data, then a short support message.

    Never asks for or handles payment details; `--no-donate-prompt` or the user's config
    (`donate_prompt: false`) turns it off, and the last question offers to do that for good.
    """
    from vdata_hub import config

    if not config.donate_prompt_enabled() or summary.records == 0:
        return
    try:
        _offer_contribution(out, summary, ask, say)
        say(f"vdata-hub and its public dataset are free, kept up by volunteers. If this run helped you, "
            f"a word of thanks or a star helps too: {SUPPORT_URL}")
        if ask("Show these questions after every run? [Y/n] ").strip().lower() in ("n", "no"):
            path = config.save_user_setting("donate_prompt", False)
            say(f"Turned off for good (setting donate_prompt: false in {path}).")
    except (EOFError, KeyboardInterrupt):
        say("")


def _offer_contribution(out: str, summary, ask, say) -> None:
    from vdata_hub.config import resolve_repo

    from vdata_hub import DATASET_LICENSE_URL

    repo = resolve_repo()
    say(WHAT_CONTRIBUTORS_AGREE_TO.format(url=DATASET_LICENSE_URL))
    answer = ask(f"Contribute these {summary.records:,} records to the public dataset {repo}? "
                 "[a]ll / [p]art / [N]one: ").strip().lower()
    if answer in ("", "n", "none"):
        return
    part = None
    if answer in ("p", "part"):
        part = ask("Which part? a fraction (0.25), a count (500) or a filter (bias_axis=gender): ").strip() or None
        if part is None:
            return
    elif answer not in ("a", "all"):
        say("Not contributing. You can do it later: vdata contribute " + out)
        return
    from vdata_hub.repo.contribute import contribute

    try:
        result = contribute(out=out, part=part, progress=say)
    except VdataError as exc:
        import inspect

        message = cli_args.as_flags(str(exc), inspect.signature(Commands.contribute).parameters)
        say(f"error: {message}\nYou can try again later: vdata contribute {out}" + (f" --part {part}" if part else ""))
        return
    if hasattr(result, "summary"):
        say(result.summary())


def _progress(quiet: bool):
    """The library's `progress` argument: off with --quiet, else bars and notes on stderr."""
    return False if quiet else _note


def _note(message: str) -> None:
    print(_parsed.with_flags(message) if _parsed is not None else message, file=sys.stderr, flush=True)


def _print_summary(result, quiet: bool) -> None:
    if os.environ.get("RANK", "0") != "0":  # a data-parallel launch: the first process speaks for all
        return
    if not quiet and result is not None and hasattr(result, "summary"):
        print(result.summary())


def main(argv: list[str] | None = None) -> None:
    global _parsed
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed = None
    try:
        parsed = _parsed = cli_args.parse(argv, Commands(), COMMAND_ALIASES, SHORT_FLAGS, LONG_ALIASES)
        if parsed.help is not None:  # on stdout, so `vdata --help | less` works
            print(parsed.help)
            return
        import fire

        fire.Fire(Commands, command=parsed.fire_argv, name="vdata")
    except BrokenPipeError:  # `vdata stats ... | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except VdataError as exc:
        message = parsed.with_flags(str(exc)) if parsed is not None else str(exc)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
