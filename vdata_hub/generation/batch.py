"""Batch mode of `generate`: the same plan, ids, records, provenance and resume as a real-time run,
sent through the providers' batch APIs (about half the price, answered within 24 hours).

What OUT holds besides the journal (journal.py):
- `batches/ledger.jsonl`: one line per step of each submission, appended and fsync'd:
  `submitting` (before anything is sent), `submitted` (the provider's batch id), `collected`
  (every answer journaled), `abandoned` (a submission that never reached the provider).
- `batches/<part>.records.jsonl`: the planned records of one submission, written before it is
  sent, so any machine with OUT and the key can collect it without rendering the plan again.

A run: find submissions a kill left without their batch id (by the tag each batch carries),
collect every batch that has ended (answers become records, the rest failures), then submit what
is neither done, nor in a batch that may still answer, nor out of retries, within the cost cap.
Without `wait` it returns at once; with it, it polls until nothing is left to wait for.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from vdata_hub.errors import VdataError
from vdata_hub.generation import quality
from vdata_hub.generation.batch_providers import BatchFailure, BatchView, Transport, transport_for
from vdata_hub.generation.journal import DoneIds, Journal, PlannedIds, Progress, _repair_tail, iter_jsonl
from vdata_hub.generation.llm import Completion
from vdata_hub.generation.prompts import PlannedRecord, iter_planned_records
from vdata_hub.generation.spec import GenerationSpec, LoadedSpec
from vdata_hub.progress import Reporter

BATCH_DIR = "batches"
LEDGER_FILE = "ledger.jsonl"
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} requests [{elapsed}]{postfix}"


@dataclass
class Part:
    """One submission: a slice of the plan sent as one provider batch."""

    part: str
    count: int
    provider: str
    intent_at: float
    estimated_usd: float = 0.0
    batch_id: Optional[str] = None
    state: str = "submitting"  # submitting | submitted | collected | abandoned
    outcome: str = ""  # when collected: completed | expired | cancelled | failed


class Ledger:
    """The submissions of one OUT folder, replayed from an append-only, fsync'd log."""

    def __init__(self, out: Path):
        self.folder = Path(out) / BATCH_DIR
        self.path = self.folder / LEDGER_FILE

    def load(self) -> dict[str, Part]:
        parts: dict[str, Part] = {}
        if self.path.exists():
            _repair_tail(self.path)
        for event in iter_jsonl(self.path):
            kind, name = event.get("event"), event.get("part", "")
            if kind == "submitting":
                parts[name] = Part(name, int(event["count"]), event.get("provider", ""), float(event["at"]),
                                   float(event.get("estimated_usd", 0.0)))
            elif name in parts:
                part = parts[name]
                part.state = kind
                part.batch_id = event.get("batch_id", part.batch_id)
                part.outcome = event.get("outcome", part.outcome)
        return parts

    def append(self, event: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({**event, "at": event.get("at", time.time())}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def records_path(self, part: str) -> Path:
        return self.folder / f"{part}.records.jsonl"

    def requests_path(self, part: str) -> Path:
        return self.folder / f"{part}.requests.jsonl"

    def planned(self, part: str):
        for row in iter_jsonl(self.records_path(part)):
            yield PlannedRecord(**row)

    def ids(self, part: str):
        for row in iter_jsonl(self.records_path(part)):
            yield row["id"]


@dataclass
class BatchTotals:
    """What this run did with batches, for the run summary."""

    submitted_now: int = 0  # requests sent by this run
    batches_now: int = 0
    collected_now: int = 0  # batches collected by this run
    in_flight: int = 0  # requests in batches that may still answer
    batches_in_flight: int = 0
    statuses: dict = None  # provider status -> batches, for the summary line
    not_submitted_budget: int = 0  # records the cost cap kept back
    provider: str = ""
    through: str = ""


class BatchRun:
    """One invocation: recover, collect what ended, submit what is left (and with `wait`, repeat)."""

    def __init__(self, out: Path, loaded: LoadedSpec, journal: Journal, progress: Progress, planned_ids: PlannedIds,
                 transport: Transport, reporter: Reporter):
        from vdata_hub.generation.generate import record_context

        self.out = out
        self.loaded = loaded
        self.spec: GenerationSpec = loaded.spec
        self.journal = journal
        self.progress = progress
        self.planned_ids = planned_ids
        self.transport = transport
        self.reporter = reporter
        self.ledger = Ledger(out)
        self.parts = self.ledger.load()
        self.context = record_context(self.spec)
        self.failures = _latest_failures(journal, planned_ids)
        self.totals = BatchTotals(statuses={}, provider=transport.name, through=transport.through)
        self.generated = self.failed = self.flagged = 0
        self.cost_this_run = 0.0
        self.over_budget = False
        self._bars: dict = {}

    # -- the run -------------------------------------------------------------------------
    async def run(self, wait: bool) -> None:
        await self.recover()
        await self.collect_ended()
        await self.submit(self._candidates())
        while wait and self.waiting_parts():
            await asyncio.sleep(self.spec.batch_options.poll_s)
            collected = await self.collect_ended()
            # everything else was submitted above: only what these batches did not answer is left
            await self.submit(planned for part in collected for planned in self.ledger.planned(part.part))
        self.count_in_flight(await self.views())
        for bar in self._bars.values():
            bar.close()

    def waiting_parts(self) -> list[Part]:
        return [p for p in self.parts.values() if p.state == "submitted"]

    async def recover(self) -> None:
        """Submissions a kill interrupted: adopt the batch the provider made, else abandon them."""
        known = {p.batch_id for p in self.parts.values() if p.batch_id}
        for part in [p for p in self.parts.values() if p.state == "submitting"]:
            batch_id = await self.transport.find(part.part, part.count, part.intent_at, known)
            if batch_id:
                known.add(batch_id)
                self._mark(part, "submitted", batch_id=batch_id)
            else:
                self._mark(part, "abandoned")
                self.ledger.requests_path(part.part).unlink(missing_ok=True)

    async def views(self) -> dict[str, BatchView]:
        waiting = self.waiting_parts()
        found = await asyncio.gather(*(self.transport.view(p.batch_id) for p in waiting))
        return {p.part: view for p, view in zip(waiting, found)}

    async def collect_ended(self) -> list[Part]:
        collected = []
        for name, view in (await self.views()).items():
            self._show(self.parts[name], view)
            if view.ended:
                await self.collect(self.parts[name], view)
                collected.append(self.parts[name])
        return collected

    def count_in_flight(self, views: dict[str, BatchView]) -> None:
        self.totals.in_flight = sum(self.parts[name].count for name in views)
        self.totals.batches_in_flight = len(views)
        self.totals.statuses = {}
        for view in views.values():
            self.totals.statuses[view.status] = self.totals.statuses.get(view.status, 0) + 1

    # -- collecting ----------------------------------------------------------------------
    async def collect(self, part: Part, view: BatchView) -> None:
        """Journal every answer of an ended batch as it downloads; what it did not answer becomes a failure.

        The batch's planned records are found by their offset in its records file, so memory
        holds one answer at a time, not the batch.
        """
        offsets = self._offsets(part)
        with open(self.ledger.records_path(part.part), "rb") as records:
            async for custom_id, answer in self.transport.results(view):
                offset = offsets.pop(custom_id, None)  # None: not this batch's, or answered twice
                if offset is not None:
                    self._settle(_planned_at(records, offset), answer, part.batch_id)
            reason = f"not answered: batch {view.outcome or view.status}"
            if view.handles.get("errors"):
                reason += f" ({'; '.join(view.handles['errors'])[:200]})"
            for offset in offsets.values():
                self._settle(_planned_at(records, offset), BatchFailure(reason), part.batch_id)
        self.journal.sync()
        self._mark(part, "collected", outcome=view.outcome)
        self.totals.collected_now += 1

    def _offsets(self, part: Part) -> dict[str, int]:
        """Record id -> byte offset of its line in the batch's records file."""
        offsets, position = {}, 0
        with open(self.ledger.records_path(part.part), "rb") as records:
            for line in records:
                offsets[json.loads(line)["id"]] = position
                position += len(line)
        return offsets

    def _settle(self, planned: PlannedRecord, answer, batch_id: str) -> None:
        from vdata_hub.generation.cost import call_cost
        from vdata_hub.generation.generate import keep_record

        if planned.id in self.progress.completed or planned.id not in self.planned_ids:
            return

        if isinstance(answer, Completion):
            reasons = quality.check_text(answer.text, self.spec.quality)
            if reasons and self.spec.quality.drop_flagged:
                answer = BatchFailure("quality: " + "; ".join(reasons))
            else:
                cost = call_cost(self.spec.model, answer.input_tokens, answer.output_tokens, batch=True)
                keep_record(self.journal, self.progress, self.spec, self.context, planned, answer, cost, list(reasons))
                self.generated += 1
                self.flagged += bool(reasons)
                self.cost_this_run += cost
                return
        previous = self.failures.get(planned.id)
        if previous and previous["batch_id"] == batch_id:
            return  # already counted: an earlier collect of this batch was interrupted
        attempts = (previous["attempts"] if previous else 0) + 1
        failure = {"id": planned.id, "reason": answer.reason, "attempts": attempts, "retry": answer.retryable,
                   "batch_id": batch_id, "template": planned.template, "variables": planned.variables,
                   "failed_at": _now()}
        self.journal.add_failure(failure)
        self.failures[planned.id] = failure
        self.failed += 1

    # -- submitting ----------------------------------------------------------------------
    def _candidates(self):
        """What may need sending: the plan, unless every planned record was sent before; then
        the records files of the collected batches hold all that is left, and the plan (100,000
        prompts to render) is not needed."""
        sent = self._ids_of(("submitting", "submitted", "collected"))
        if len(sent) < len(self.planned_ids):
            return iter_planned_records(self.loaded)
        collected = [part for part in self.parts.values() if part.state == "collected"]
        return (planned for part in collected for planned in self.ledger.planned(part.part))

    def _ids_of(self, states: tuple) -> DoneIds:
        """The planned ids in the batches whose ledger state is one of `states`."""
        ids = DoneIds(self.planned_ids)
        for part in self.parts.values():
            if part.state in states:
                for record_id in self.ledger.ids(part.part):
                    if record_id in self.planned_ids:
                        ids.add(record_id)
        return ids

    def _submittable(self, candidates):
        """The candidates that are not done, not in a batch that may answer, not out of retries,
        and not already taken by this call (a record can be in several collected batches)."""
        taken = self._ids_of(("submitting", "submitted"))
        budget = self.spec.retries.max_attempts
        for planned in candidates:
            failure = self.failures.get(planned.id)
            if planned.id in self.progress.completed or planned.id in taken or planned.id not in self.planned_ids:
                continue
            if failure and (not failure.get("retry", True) or failure.get("attempts", 0) >= budget):
                continue
            taken.add(planned.id)
            yield planned

    async def submit(self, candidates) -> None:
        """Send the candidates that are submittable, in batches within the limits and the cap."""
        limit = min(self.transport.limits.max_requests, self.spec.batch_options.max_requests or 10**9)
        max_bytes = self.transport.limits.max_bytes
        spendable = self._spendable()
        part = lines = None
        size = 0
        for planned in self._submittable(candidates):
            expected = self._expected_cost(planned)
            if spendable is not None:
                if expected > spendable:
                    self.over_budget = True
                    self.totals.not_submitted_budget += 1
                    continue
                spendable -= expected
            line = self.transport.request_line(planned.id, planned.prompt, planned.system_prompt)
            if part is not None and (len(part["ids"]) >= limit or size + len(line) > max_bytes):
                await self._send(part, lines)
                part = None
            if part is None:
                part, size = self._open_part(), 0
                lines = open(self.ledger.requests_path(part["part"]), "wb")
                part["records"] = open(self.ledger.records_path(part["part"]), "w", encoding="utf-8")
            lines.write(line)
            size += len(line)
            part["records"].write(json.dumps(asdict(planned), ensure_ascii=False) + "\n")
            part["ids"].append(planned.id)
            part["estimated_usd"] += expected
        if part is not None:
            await self._send(part, lines)

    def _open_part(self) -> dict:
        self.ledger.folder.mkdir(parents=True, exist_ok=True)
        return {"part": time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8], "ids": [], "estimated_usd": 0.0}

    async def _send(self, part: dict, lines) -> None:
        """Intent first (fsync'd), then upload and create, then the batch id (fsync'd)."""
        for handle in (lines, part["records"]):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        name, count = part["part"], len(part["ids"])
        intent = {"event": "submitting", "part": name, "count": count, "provider": self.transport.name,
                  "estimated_usd": round(part["estimated_usd"], 8)}
        self.ledger.append(intent)
        self.parts[name] = Part(name, count, self.transport.name, time.time(), part["estimated_usd"])
        with open(self.ledger.requests_path(name), "rb") as request_file:
            batch_id = await self.transport.submit(name, request_file)
        self._mark(self.parts[name], "submitted", batch_id=batch_id)
        self.ledger.requests_path(name).unlink(missing_ok=True)
        self.totals.submitted_now += count
        self.totals.batches_now += 1

    def _spendable(self) -> Optional[float]:
        """USD the cap leaves for new requests: minus what is spent and what is in flight."""
        cap = self.spec.max_cost_usd
        if cap is None:
            return None
        in_flight = sum(p.estimated_usd for p in self.parts.values() if p.state in ("submitting", "submitted"))
        return cap - self.progress.cost_usd - in_flight

    def _expected_cost(self, planned: PlannedRecord) -> float:
        """The average batch cost of a record so far; before the first, the most it can cost."""
        from vdata_hub.generation.cost import call_cost, prompt_tokens

        if self.progress.completed:
            return self.progress.cost_usd / len(self.progress.completed)
        return call_cost(self.spec.model, prompt_tokens(planned.prompt, planned.system_prompt),
                         self.spec.sampling.max_tokens, batch=True)

    # -- bookkeeping ---------------------------------------------------------------------
    def _mark(self, part: Part, state: str, **fields) -> None:
        self.ledger.append({"event": state, "part": part.part, **fields})
        part.state = state
        part.batch_id = fields.get("batch_id", part.batch_id)
        part.outcome = fields.get("outcome", part.outcome)

    def _show(self, part: Part, view: BatchView) -> None:
        """One bar per batch: requests answered (when the provider says) and its status."""
        if not self.reporter.enabled:
            return
        bar = self._bars.get(part.part)
        if bar is None:
            bar = self._bars[part.part] = self.reporter.bar(
                total=part.count, unit="req", desc=f"batch {part.batch_id[-12:]}", position=len(self._bars),
                leave=False, dynamic_ncols=True, bar_format=BAR_FORMAT)
        if view.done is not None:
            bar.n = view.done
        bar.set_postfix_str(view.status, refresh=True)


def _release_freed_memory() -> None:
    """Give back to the system the heap that collecting freed, before the dataset is rebuilt.

    glibc keeps the freed blocks of the many ~1 KB answers and rows for reuse, and the rebuild
    then grows RSS on top of them.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _planned_at(records, offset: int) -> PlannedRecord:
    records.seek(offset)
    return PlannedRecord(**json.loads(records.readline()))


def _latest_failures(journal: Journal, planned_ids: PlannedIds) -> dict:
    """The latest failure line of each planned record (attempts so far, batch, retryable)."""
    latest = {}
    for failure in iter_jsonl(journal.failures_path):
        if failure.get("id") in planned_ids:
            latest[failure["id"]] = failure
    return latest


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_batch(out: Path, loaded: LoadedSpec, planned_ids: PlannedIds, api_key: Optional[str], reporter: Reporter,
              wait: bool):
    """Batch mode of `generate`: returns its RunSummary (status `waiting` while batches run)."""
    from vdata_hub.generation.generate import RunSummary, finish_dataset
    from vdata_hub.generation.journal import write_json_atomic
    from vdata_hub.generation.llm import resolve_api_key

    spec = loaded.spec
    key = resolve_api_key(api_key, spec.model, spec.api_base)
    transport = transport_for(spec.model, spec.api_base, key, spec.sampling)
    journal = Journal(out).open()
    try:
        write_json_atomic(out / "spec.json", spec.model_dump())
        progress = journal.load(planned_ids)
        started = time.monotonic()
        run = BatchRun(out, loaded, journal, progress, planned_ids, transport, reporter)
        resumed = len(progress.completed)
        asyncio.run(run.run(wait))
        wall_s = time.monotonic() - started
        _release_freed_memory()
        records, augmented, failed, pending = finish_dataset(loaded, journal, planned_ids, progress)
        totals = run.totals
        if run.over_budget and not totals.in_flight:
            status = "budget_exceeded"
        elif totals.in_flight:
            status = "waiting"
        else:
            status = "complete" if pending == 0 and failed == 0 else "incomplete"
        summary = RunSummary.for_batch(
            out=str(out), spec=spec, status=status, requested=len(planned_ids), records=records,
            augmented=augmented, failed=failed, pending=pending, resumed=resumed, generated=run.generated,
            flagged=run.flagged, progress=progress, cost_this_run=run.cost_this_run, wall_s=wall_s,
            batch=asdict(totals))
        write_json_atomic(out / "run_summary.json", summary.to_dict())
        return summary
    finally:
        journal.close()


# ---------------------------------------------------------------------------------------------
# `vdata batch status OUT` and `vdata batch cancel OUT`: read OUT, ask the provider, write nothing


def _saved(out: str, api_key: Optional[str]) -> tuple[Ledger, dict, Transport]:
    from vdata_hub.generation.llm import resolve_api_key

    spec_path = Path(out) / "spec.json"
    ledger = Ledger(Path(out))
    if not spec_path.exists() or not ledger.path.exists():
        raise VdataError(f"{out}: no batch run here (run `vdata gen {out} SPEC --batch` first)")
    spec = GenerationSpec.model_validate(json.loads(spec_path.read_text(encoding="utf-8")))
    key = resolve_api_key(api_key, spec.model, spec.api_base)
    return ledger, ledger.load(), transport_for(spec.model, spec.api_base, key, spec.sampling)


@dataclass
class BatchStatus:
    """The batches of an OUT folder as the provider sees them now."""

    out: str
    provider: str
    batches: list  # one dict per submission: part, batch_id, state, status, done, total, requests

    def summary(self) -> str:
        if not self.batches:
            return f"{self.out}: no batches"
        lines = [f"{'batch':<40} {'status':<22} {'answered':>12}  ledger"]
        for item in self.batches:
            done = "" if item["done"] is None else f"{item['done']:,}/{item['requests']:,}"
            lines.append(f"{str(item['batch_id'] or '-'):<40} {item['status']:<22} {done:>12}  {item['state']}")
        waiting = sum(item["requests"] for item in self.batches if item["state"] == "submitted")
        count = f"{len(self.batches)} batch" + ("" if len(self.batches) == 1 else "es")
        lines.append(f"{count} ({self.provider}); {waiting:,} requests not collected yet"
                     + (f": run the same `vdata gen {self.out} ... --batch` to collect" if waiting else ""))
        return "\n".join(lines)


def batch_status(out: str = "vdata-out", api_key: Optional[str] = None) -> BatchStatus:
    """Each submission of OUT with the provider's status of its batch (collected ones as recorded)."""
    ledger, parts, transport = _saved(out, api_key)

    async def ask() -> list:
        waiting = [p for p in parts.values() if p.state == "submitted"]
        views = dict(zip([p.part for p in waiting],
                         await asyncio.gather(*(transport.view(p.batch_id) for p in waiting))))
        rows = []
        for part in parts.values():
            view = views.get(part.part)
            rows.append({"part": part.part, "batch_id": part.batch_id, "state": part.state, "requests": part.count,
                         "status": view.status if view else (part.outcome or part.state),
                         "done": view.done if view else None})
        return rows

    return BatchStatus(out=str(out), provider=transport.name, batches=asyncio.run(ask()))


def batch_cancel(out: str = "vdata-out", api_key: Optional[str] = None) -> list[str]:
    """Ask the provider to cancel every batch of OUT not collected yet; the ids asked.

    What the batches answered before they stopped is kept: the next `vdata gen ... --batch`
    collects it (and resubmits the rest, within the retry budget).
    """
    _, parts, transport = _saved(out, api_key)
    waiting = [p.batch_id for p in parts.values() if p.state == "submitted"]

    async def cancel_all() -> None:
        await asyncio.gather(*(transport.cancel(batch_id) for batch_id in waiting))

    asyncio.run(cancel_all())
    return waiting
