"""Batch APIs of the fake server: OpenAI files + batches, Anthropic Message Batches, Gemini batch jobs.

Each follows the provider's wire format closely enough for the real clients (LiteLLM, `anthropic`,
`google-genai`) to drive it: the request and result JSONL lines, the status objects and their
phases, the ids. Behaviour is set through the same `/control` settings as the chat endpoint:

- `batch_validating_s`, `batch_finish_s`, `batch_finalizing_s`: a batch validates, then answers
  its requests one after another, evenly over `batch_finish_s`, then spends `batch_finalizing_s`
  "finalizing" (OpenAI's phase) before it is complete. Read at every status request, so a test
  can hold batches (a large `batch_finish_s`) and later let them finish (`batch_finish_s=0`).
- `batch_expire_s`: the completion window; a batch still running then expires, keeping the
  answers it had (OpenAI's output file, Anthropic's `succeeded` lines, Gemini's responses file).
- `batch_fail_matching` (prompt substring → "500"/"400"/"429") and `batch_faults` (a queue of
  [kind, count]): requests that come back as errors inside an otherwise fine batch.
- `batch_max_requests`, `batch_max_bytes`: what the provider accepts in one batch.
- `batch_create_delay_s`, `batch_download_delay_s`: slow answers, to kill a client while it waits
  for a batch id the provider already made, or in the middle of collecting.

The state lives in the server, so a client killed at any point finds its batches where it left
them. Counters: `batch_submitted` (times each custom id was sent in an accepted batch) and
`batch_answered` (times each custom id got a billed answer): a run that pays twice for a
record shows a 2 there.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from aiohttp import web

BATCH_DEFAULTS = {
    "batch_validating_s": 0.0,
    "batch_finish_s": 0.0,
    "batch_finalizing_s": 0.0,
    "batch_expire_s": 86400.0,
    "batch_fail_matching": {},
    "batch_faults": [],
    "batch_max_requests": 50000,
    "batch_max_bytes": 200 * 1024 * 1024,
    "batch_create_delay_s": 0.0,  # the batch exists at once, its id is answered this much later
    "batch_download_delay_s": 0.0,  # before each results download answers
}
ERROR_STATUS = {"500": 500, "400": 400, "429": 429}
TERMINAL = ("completed", "expired", "cancelled", "failed")
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


@dataclass
class BatchRequest:
    """One request of a batch, as the fake model will answer it."""

    custom_id: str
    prompt: str
    model: str
    fault: Optional[str]  # decided when the batch is created, so a kill changes nothing


@dataclass
class FakeBatch:
    provider: str  # openai | anthropic | gemini
    id: str
    created: float
    requests: list
    endpoint: str = "/v1/chat/completions"
    input_file_id: str = ""
    model: str = ""
    display_name: str = ""
    metadata: Optional[dict] = None
    failed_errors: Optional[list] = None  # validation errors: the batch failed as a whole
    cancel_at: Optional[float] = None
    cancel_answered: int = 0  # requests answered when the cancel arrived (they keep their answers)
    final: Optional[dict] = None  # frozen outcome once terminal: status, answered count, time
    output_file_id: Optional[str] = None
    error_file_id: Optional[str] = None
    answered_counted: bool = False


@dataclass
class BatchStore:
    """Everything the batch endpoints keep: files, batches, counters."""

    files: dict = field(default_factory=dict)  # id -> {"bytes": b"...", "filename", "purpose", "created"}
    batches: dict = field(default_factory=dict)  # id -> FakeBatch, in creation order
    uploads: dict = field(default_factory=dict)  # Gemini resumable upload id -> display name
    submitted: dict = field(default_factory=dict)  # custom_id -> times sent in an accepted batch
    answered: dict = field(default_factory=dict)  # custom_id -> times answered (billed)
    counters: dict = field(default_factory=lambda: {"batch_files": 0, "batch_creates": 0, "batch_cancels": 0,
                                                      "batch_retrieves": 0, "batch_result_downloads": 0})


def _state(request: web.Request):
    from tests.fake_llm.server import STATE

    return request.app[STATE]


def _settings(request: web.Request) -> dict:
    return _state(request).settings


def _store(request: web.Request) -> BatchStore:
    return _state(request).batch_store


def _root(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _iso(moment: Optional[float]) -> Optional[str]:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _unauthorized(request: web.Request, key: str) -> bool:
    state = _state(request)
    return key in state.settings["bad_keys"]


def _next_fault(settings: dict, prompt: str) -> Optional[str]:
    from tests.fake_llm.server import pop_fault

    for substring, kind in settings["batch_fail_matching"].items():
        if substring in prompt:
            return kind
    return pop_fault(settings["batch_faults"])


def _register(store: BatchStore, batch: FakeBatch) -> FakeBatch:
    store.batches[batch.id] = batch
    store.counters["batch_creates"] += 1
    if batch.failed_errors is None:
        for item in batch.requests:
            store.submitted[item.custom_id] = store.submitted.get(item.custom_id, 0) + 1
    return batch


# ---------------------------------------------------------------------------------------------
# The life of a batch, the same for every provider


def advance(batch: FakeBatch, settings: dict, now: Optional[float] = None) -> dict:
    """Where a batch stands now: {"status", "answered", "phase_at"}; frozen once terminal.

    status is one of validating, in_progress, finalizing, completed, expired, cancelling,
    cancelled, failed. `answered` counts the requests answered so far (in order).
    """
    if batch.final is not None:
        return batch.final
    now = time.time() if now is None else now
    total = len(batch.requests)
    if batch.failed_errors is not None:
        batch.final = {"status": "failed", "answered": 0, "at": batch.created}
        return batch.final
    validating, finish = settings["batch_validating_s"], settings["batch_finish_s"]
    finalizing, window = settings["batch_finalizing_s"], settings["batch_expire_s"]

    def answered_at(elapsed: float) -> int:  # seconds since creation (not a clock time: (t + w) - t may fall short of w)
        running = elapsed - validating
        if running < 0:
            return 0
        return total if finish <= 0 else min(total, int(running / finish * total))

    if batch.cancel_at is not None:
        answered = batch.cancel_answered
        if now >= batch.cancel_at + finalizing:
            batch.final = {"status": "cancelled", "answered": answered, "at": batch.cancel_at + finalizing}
            return batch.final
        return {"status": "cancelling", "answered": answered, "at": batch.cancel_at}
    expires = batch.created + window
    if now >= expires and answered_at(window) < total:
        batch.final = {"status": "expired", "answered": answered_at(window), "at": expires}
        return batch.final
    answered = answered_at(now - batch.created)
    if now - batch.created < validating:
        return {"status": "validating", "answered": 0, "at": batch.created}
    if answered < total:
        return {"status": "in_progress", "answered": answered, "at": batch.created + validating}
    done_at = batch.created + validating + max(finish, 0.0)
    if now < done_at + finalizing:
        return {"status": "finalizing", "answered": total, "at": done_at}
    batch.final = {"status": "completed", "answered": total, "at": done_at + finalizing}
    return batch.final


def _request_cancel(request: web.Request, batch: FakeBatch) -> str:
    """Start cancelling a batch that has not ended; its status before."""
    outcome = advance(batch, _settings(request))
    status = outcome["status"]
    if status not in TERMINAL and batch.cancel_at is None:
        batch.cancel_at = time.time()
        batch.cancel_answered = outcome["answered"]
        _store(request).counters["batch_cancels"] += 1
    return status


def _count_answers(store: BatchStore, batch: FakeBatch, outcome: dict) -> None:
    """Once a batch is terminal, every request it answered without error is billed once."""
    if batch.answered_counted or batch.final is None:
        return
    batch.answered_counted = True
    for item in batch.requests[:outcome["answered"]]:
        if item.fault is None:
            store.answered[item.custom_id] = store.answered.get(item.custom_id, 0) + 1


def _reply(item: BatchRequest, settings: dict, batch_id: str) -> tuple[str, int, int]:
    """The answer text and token counts of one request: the same for the same request in the
    same batch, another one when it is sent again (as a model samples anew)."""
    from tests.fake_llm.server import reply_text

    seed = hashlib.sha256(f"{item.prompt}\x00{item.custom_id}\x00{batch_id}".encode()).hexdigest()
    text = reply_text(seed, settings["reply_sentences"])
    return text, max(1, len(item.prompt) // 4), max(1, len(text) // 4)


def _status_of(request: web.Request, batch: FakeBatch) -> dict:
    store, settings = _store(request), _settings(request)
    outcome = advance(batch, settings)
    _count_answers(store, batch, outcome)
    return outcome


# ---------------------------------------------------------------------------------------------
# OpenAI: /v1/files and /v1/batches


def _openai_error(message: str, status: int, kind: str = "invalid_request_error", code=None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": code}}, status=status)


def _openai_key(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()


def _openai_auth(handler):
    async def checked(request: web.Request) -> web.StreamResponse:
        if _unauthorized(request, _openai_key(request)):
            return _openai_error("Incorrect API key provided.", 401, code="invalid_api_key")
        return await handler(request)

    return checked


def _file_object(file_id: str, entry: dict) -> dict:
    return {"id": file_id, "object": "file", "bytes": len(entry["bytes"]), "created_at": int(entry["created"]),
            "filename": entry["filename"], "purpose": entry["purpose"], "status": "processed",
            "status_details": None, "expires_at": None}


@_openai_auth
async def _openai_upload(request: web.Request) -> web.Response:
    store = _store(request)
    fields = {}
    async for part in await request.multipart():
        if part.name == "file":
            fields["filename"] = part.filename or "upload.jsonl"
            fields["bytes"] = await part.read()
        else:
            fields[part.name] = (await part.text()).strip()
    if "bytes" not in fields:
        return _openai_error("Missing file.", 400)
    file_id = _new_id("file-")
    store.files[file_id] = {"bytes": fields["bytes"], "filename": fields["filename"],
                            "purpose": fields.get("purpose", "batch"), "created": time.time()}
    store.counters["batch_files"] += 1
    return web.json_response(_file_object(file_id, store.files[file_id]))


@_openai_auth
async def _openai_file(request: web.Request) -> web.Response:
    entry = _store(request).files.get(request.match_info["file_id"])
    if entry is None:
        return _openai_error("No such File object.", 404)
    return web.json_response(_file_object(request.match_info["file_id"], entry))


@_openai_auth
async def _openai_file_content(request: web.Request) -> web.Response:
    store = _store(request)
    entry = store.files.get(request.match_info["file_id"])
    if entry is None:
        return _openai_error("No such File object.", 404)
    if entry["purpose"] == "batch_output":
        store.counters["batch_result_downloads"] += 1
        await asyncio.sleep(_settings(request)["batch_download_delay_s"])
    return web.Response(body=entry["bytes"], content_type="application/octet-stream")


@_openai_auth
async def _openai_file_delete(request: web.Request) -> web.Response:
    file_id = request.match_info["file_id"]
    deleted = _store(request).files.pop(file_id, None) is not None
    return web.json_response({"id": file_id, "object": "file", "deleted": deleted}, status=200 if deleted else 404)


def _parse_openai_lines(data: bytes, endpoint: str, settings: dict) -> tuple[list, Optional[list]]:
    """(requests, None) or ([], validation errors) for an uploaded OpenAI batch input file."""
    if len(data) > settings["batch_max_bytes"]:
        return [], [{"code": "file_too_large", "message": f"File is larger than {settings['batch_max_bytes']} bytes.",
                     "param": None, "line": None}]
    requests, seen = [], set()
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            custom_id, body = row["custom_id"], row["body"]
            if row.get("method") != "POST" or row.get("url") != endpoint:
                raise ValueError(f"url must be {endpoint} and method POST")
        except (ValueError, KeyError, TypeError) as exc:
            return [], [{"code": "invalid_request", "message": f"Invalid request on line {number}: {exc}",
                         "param": None, "line": number}]
        if custom_id in seen:
            return [], [{"code": "duplicate_custom_id", "message": f"Duplicate custom_id {custom_id!r}.",
                         "param": "custom_id", "line": number}]
        seen.add(custom_id)
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        requests.append(BatchRequest(custom_id, prompt, str(body.get("model", "")), _next_fault(settings, prompt)))
    if len(requests) > settings["batch_max_requests"]:
        return [], [{"code": "too_many_requests", "message": f"A batch holds at most "
                     f"{settings['batch_max_requests']} requests.", "param": None, "line": None}]
    return requests, None


@_openai_auth
async def _openai_create_batch(request: web.Request) -> web.Response:
    store, settings = _store(request), _settings(request)
    body = await request.json()
    entry = store.files.get(body.get("input_file_id", ""))
    if entry is None:
        return _openai_error(f"File {body.get('input_file_id')!r} not found.", 400)
    endpoint = body.get("endpoint", "/v1/chat/completions")
    requests, errors = _parse_openai_lines(entry["bytes"], endpoint, settings)
    batch = _register(store, FakeBatch("openai", _new_id("batch_"), time.time(), requests, endpoint=endpoint,
                                       input_file_id=body["input_file_id"], metadata=body.get("metadata"),
                                       failed_errors=errors))
    await asyncio.sleep(settings["batch_create_delay_s"])
    return web.json_response(_openai_batch_object(request, batch))


def _openai_batch_object(request: web.Request, batch: FakeBatch) -> dict:
    settings = _settings(request)
    outcome = _status_of(request, batch)
    status = outcome["status"]
    if status in ("completed", "expired", "cancelled"):
        _openai_result_files(request, batch, outcome)
    answered = batch.requests[:outcome["answered"]]
    failed = sum(item.fault is not None for item in answered)
    stamp = outcome["at"]
    return {
        "id": batch.id, "object": "batch", "endpoint": batch.endpoint, "errors":
        {"object": "list", "data": batch.failed_errors} if batch.failed_errors else None,
        "input_file_id": batch.input_file_id, "completion_window": "24h", "status": status,
        "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
        "created_at": int(batch.created),
        "in_progress_at": int(batch.created + settings["batch_validating_s"]) if status != "validating" else None,
        "expires_at": int(batch.created + settings["batch_expire_s"]),
        "finalizing_at": int(stamp) if status in ("finalizing", "completed") else None,
        "completed_at": int(stamp) if status == "completed" else None,
        "failed_at": int(stamp) if status == "failed" else None,
        "expired_at": int(stamp) if status == "expired" else None,
        "cancelling_at": int(batch.cancel_at) if batch.cancel_at else None,
        "cancelled_at": int(stamp) if status == "cancelled" else None,
        "request_counts": {"total": len(batch.requests), "completed": len(answered) - failed, "failed": failed},
        "metadata": batch.metadata,
    }


def _openai_result_files(request: web.Request, batch: FakeBatch, outcome: dict) -> None:
    """Write the output and error files once the batch has ended (answers, errors, expiries)."""
    if batch.output_file_id is not None or batch.error_file_id is not None:
        return
    store, settings = _store(request), _settings(request)
    output, errors = [], []
    for number, item in enumerate(batch.requests):
        line_id = f"batch_req_{hashlib.sha256(f'{batch.id}{number}'.encode()).hexdigest()[:24]}"
        if number >= outcome["answered"]:
            if outcome["status"] == "expired":
                errors.append({"id": line_id, "custom_id": item.custom_id, "response": None,
                               "error": {"code": "batch_expired", "message": EXPIRED_MESSAGE}})
            continue  # cancelled before it ran: no line
        request_id = hashlib.md5(line_id.encode()).hexdigest()
        if item.fault is not None:
            status = ERROR_STATUS.get(item.fault, 500)
            errors.append({"id": line_id, "custom_id": item.custom_id, "error": None, "response": {
                "status_code": status, "request_id": request_id,
                "body": {"error": {"message": f"fake {item.fault} error", "type": "server_error" if status >= 500
                                   else "invalid_request_error", "param": None, "code": None}}}})
            continue
        text, prompt_tokens, completion_tokens = _reply(item, settings, batch.id)
        output.append({"id": line_id, "custom_id": item.custom_id, "error": None, "response": {
            "status_code": 200, "request_id": request_id, "body": {
                "id": f"chatcmpl-{request_id[:20]}", "object": "chat.completion", "created": int(time.time()),
                "model": item.model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                  "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}}})
    for rows, attribute, name in ((output, "output_file_id", "output"), (errors, "error_file_id", "errors")):
        if rows:
            file_id = _new_id("file-")
            store.files[file_id] = {"bytes": "".join(json.dumps(row) + "\n" for row in rows).encode(),
                                    "filename": f"batch_{batch.id}_{name}.jsonl", "purpose": "batch_output",
                                    "created": time.time()}
            setattr(batch, attribute, file_id)


def _find(request: web.Request, provider: str) -> Optional[FakeBatch]:
    batch = _store(request).batches.get(request.match_info["batch_id"])
    return batch if batch is not None and batch.provider == provider else None


@_openai_auth
async def _openai_retrieve_batch(request: web.Request) -> web.Response:
    _store(request).counters["batch_retrieves"] += 1
    batch = _find(request, "openai")
    if batch is None:
        return _openai_error("No such batch.", 404)
    return web.json_response(_openai_batch_object(request, batch))


@_openai_auth
async def _openai_cancel_batch(request: web.Request) -> web.Response:
    batch = _find(request, "openai")
    if batch is None:
        return _openai_error("No such batch.", 404)
    status = _request_cancel(request, batch)
    if status in TERMINAL:
        return _openai_error(f"Cannot cancel a batch with status '{status}'.", 409)
    return web.json_response(_openai_batch_object(request, batch))


@_openai_auth
async def _openai_list_batches(request: web.Request) -> web.Response:
    batches = [b for b in reversed(list(_store(request).batches.values())) if b.provider == "openai"]
    after = request.query.get("after")
    if after:
        ids = [b.id for b in batches]
        batches = batches[ids.index(after) + 1:] if after in ids else []
    limit = int(request.query.get("limit", 20))
    page = [_openai_batch_object(request, b) for b in batches[:limit]]
    return web.json_response({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                              "last_id": page[-1]["id"] if page else None, "has_more": len(batches) > limit})


# ---------------------------------------------------------------------------------------------
# Anthropic: /v1/messages/batches


def _anthropic_error(message: str, status: int, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message},
                              "request_id": _new_id("req_")}, status=status)


def _anthropic_auth(handler):
    async def checked(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("x-api-key") or _openai_key(request)
        if _unauthorized(request, key):
            return _anthropic_error("invalid x-api-key", 401, "authentication_error")
        return await handler(request)

    return checked


def _anthropic_prompt(params: dict) -> str:
    parts = []
    system = params.get("system")
    if system:
        parts.append(system if isinstance(system, str) else " ".join(b.get("text", "") for b in system))
    for message in params.get("messages", []):
        content = message.get("content", "")
        parts.append(content if isinstance(content, str) else " ".join(b.get("text", "") for b in content))
    return "\n".join(parts)


@_anthropic_auth
async def _anthropic_create(request: web.Request) -> web.Response:
    store, settings = _store(request), _settings(request)
    raw = await request.read()
    if len(raw) > settings["batch_max_bytes"]:
        return _anthropic_error("Request exceeds the maximum allowed size.", 413, "request_too_large")
    body = json.loads(raw)
    items = body.get("requests") or []
    if not items:
        return _anthropic_error("requests: List should have at least 1 item", 400)
    if len(items) > settings["batch_max_requests"]:
        return _anthropic_error(f"requests: at most {settings['batch_max_requests']} requests in a batch", 400)
    requests, seen = [], set()
    for item in items:
        custom_id = item.get("custom_id", "")
        if custom_id in seen:
            return _anthropic_error(f"Duplicate custom_id: {custom_id}", 400)
        seen.add(custom_id)
        params = item.get("params") or {}
        if "max_tokens" not in params or "messages" not in params:
            return _anthropic_error(f"requests.{len(requests)}.params: max_tokens and messages are required", 400)
        prompt = _anthropic_prompt(params)
        requests.append(BatchRequest(custom_id, prompt, str(params.get("model", "")), _next_fault(settings, prompt)))
    batch = _register(store, FakeBatch("anthropic", _new_id("msgbatch_"), time.time(), requests))
    await asyncio.sleep(settings["batch_create_delay_s"])
    return web.json_response(_anthropic_batch_object(request, batch))


def _anthropic_batch_object(request: web.Request, batch: FakeBatch) -> dict:
    settings = _settings(request)
    outcome = _status_of(request, batch)
    status = outcome["status"]
    ended = status in ("completed", "expired", "cancelled", "failed")
    counts = {"processing": len(batch.requests), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if ended:  # like the real API: requests leave "processing" only when the whole batch ends
        answered = batch.requests[:outcome["answered"]]
        errored = sum(item.fault is not None for item in answered)
        rest = len(batch.requests) - len(answered)
        counts = {"processing": 0, "succeeded": len(answered) - errored, "errored": errored,
                  "canceled": rest if status == "cancelled" else 0, "expired": rest if status == "expired" else 0}
    return {
        "id": batch.id, "type": "message_batch",
        "processing_status": "ended" if ended else ("canceling" if status == "cancelling" else "in_progress"),
        "request_counts": counts, "ended_at": _iso(outcome["at"]) if ended else None,
        "created_at": _iso(batch.created), "expires_at": _iso(batch.created + settings["batch_expire_s"]),
        "archived_at": None, "cancel_initiated_at": _iso(batch.cancel_at),
        "results_url": f"{_root(request)}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


@_anthropic_auth
async def _anthropic_retrieve(request: web.Request) -> web.Response:
    _store(request).counters["batch_retrieves"] += 1
    batch = _find(request, "anthropic")
    if batch is None:
        return _anthropic_error("Message batch not found", 404, "not_found_error")
    return web.json_response(_anthropic_batch_object(request, batch))


@_anthropic_auth
async def _anthropic_cancel(request: web.Request) -> web.Response:
    batch = _find(request, "anthropic")
    if batch is None:
        return _anthropic_error("Message batch not found", 404, "not_found_error")
    _request_cancel(request, batch)
    return web.json_response(_anthropic_batch_object(request, batch))


@_anthropic_auth
async def _anthropic_results(request: web.Request) -> web.StreamResponse:
    store, settings = _store(request), _settings(request)
    batch = _find(request, "anthropic")
    if batch is None:
        return _anthropic_error("Message batch not found", 404, "not_found_error")
    outcome = _status_of(request, batch)
    if batch.final is None:
        return _anthropic_error(f"Message batch {batch.id} has not ended yet", 404, "not_found_error")
    store.counters["batch_result_downloads"] += 1
    await asyncio.sleep(settings["batch_download_delay_s"])
    lines = []
    for number, item in enumerate(batch.requests):
        if number >= outcome["answered"]:
            kind = "expired" if outcome["status"] == "expired" else "canceled"
            lines.append({"custom_id": item.custom_id, "result": {"type": kind}})
        elif item.fault is not None:
            kind = {"400": "invalid_request_error", "429": "rate_limit_error"}.get(item.fault, "api_error")
            lines.append({"custom_id": item.custom_id, "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": kind, "message": f"fake {item.fault} error"},
                "request_id": _new_id("req_")}}})
        else:
            text, prompt_tokens, completion_tokens = _reply(item, settings, batch.id)
            lines.append({"custom_id": item.custom_id, "result": {"type": "succeeded", "message": {
                "id": _new_id("msg_"), "type": "message", "role": "assistant", "model": item.model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}}}})
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return web.Response(body=body, content_type="application/binary")


@_anthropic_auth
async def _anthropic_list(request: web.Request) -> web.Response:
    batches = [b for b in reversed(list(_store(request).batches.values())) if b.provider == "anthropic"]
    limit = int(request.query.get("limit", 20))
    after = request.query.get("after_id")
    if after:
        ids = [b.id for b in batches]
        batches = batches[ids.index(after) + 1:] if after in ids else []
    page = [_anthropic_batch_object(request, b) for b in batches[:limit]]
    return web.json_response({"data": page, "has_more": len(batches) > limit,
                              "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None})


# ---------------------------------------------------------------------------------------------
# Gemini: resumable file upload, models/{model}:batchGenerateContent, batches/{id}, downloads

GEMINI_STATES = {"validating": "BATCH_STATE_PENDING", "in_progress": "BATCH_STATE_RUNNING",
                 "finalizing": "BATCH_STATE_RUNNING", "completed": "BATCH_STATE_SUCCEEDED",
                 "failed": "BATCH_STATE_FAILED", "cancelling": "BATCH_STATE_RUNNING",
                 "cancelled": "BATCH_STATE_CANCELLED", "expired": "BATCH_STATE_EXPIRED"}
_upload_numbers = itertools.count(1)


def _gemini_error(message: str, status: int, kind: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message, "status": kind}}, status=status)


def _gemini_auth(handler):
    async def checked(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        if _unauthorized(request, key):
            return _gemini_error("API key not valid. Please pass a valid API key.", 400, "INVALID_ARGUMENT")
        return await handler(request)

    return checked


def _gemini_file_object(request: web.Request, file_id: str, entry: dict) -> dict:
    return {"name": f"files/{file_id}", "displayName": entry["filename"], "mimeType": "application/jsonl",
            "sizeBytes": str(len(entry["bytes"])), "createTime": _iso(entry["created"]),
            "updateTime": _iso(entry["created"]), "expirationTime": _iso(entry["created"] + 48 * 3600),
            "sha256Hash": hashlib.sha256(entry["bytes"]).hexdigest(), "uri": f"{_root(request)}/v1beta/files/{file_id}",
            "state": "ACTIVE", "source": "UPLOADED"}


@_gemini_auth
async def _gemini_upload(request: web.Request) -> web.Response:
    """The resumable protocol: `start` answers an upload URL; `upload, finalize` sends the bytes."""
    store = _store(request)
    command = request.headers.get("X-Goog-Upload-Command", "")
    if "start" in command:
        body = await request.json() if request.can_read_body else {}
        name = (body.get("file") or {}).get("display_name") or (body.get("file") or {}).get("displayName") or "upload"
        upload_id = str(next(_upload_numbers))
        store.uploads[upload_id] = name
        url = f"{_root(request)}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
        return web.json_response({}, headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})
    upload_id = request.query.get("upload_id", "")
    if upload_id not in store.uploads:
        return _gemini_error("No such upload.", 404, "NOT_FOUND")
    data = await request.read()
    file_id = uuid.uuid4().hex[:16]
    store.files[file_id] = {"bytes": data, "filename": store.uploads.pop(upload_id), "purpose": "batch",
                            "created": time.time()}
    store.counters["batch_files"] += 1
    return web.json_response({"file": _gemini_file_object(request, file_id, store.files[file_id])},
                             headers={"X-Goog-Upload-Status": "final"})


def _gemini_prompt(row_request: dict) -> str:
    texts = [part.get("text", "") for part in (row_request.get("systemInstruction") or
                                                row_request.get("system_instruction") or {}).get("parts", [])]
    for content in row_request.get("contents", []):
        texts.extend(part.get("text", "") for part in content.get("parts", []))
    return "\n".join(texts)


@_gemini_auth
async def _gemini_create(request: web.Request) -> web.Response:
    store, settings = _store(request), _settings(request)
    body = (await request.json()).get("batch") or {}
    config = body.get("inputConfig") or body.get("input_config") or {}
    file_name = str(config.get("fileName") or config.get("file_name") or "")
    entry = store.files.get(file_name.removeprefix("files/"))
    if entry is None:
        return _gemini_error(f"File {file_name} not found.", 400, "INVALID_ARGUMENT")
    if len(entry["bytes"]) > settings["batch_max_bytes"]:
        return _gemini_error("Input file is too large.", 400, "INVALID_ARGUMENT")
    requests = []
    for line in entry["bytes"].decode("utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        key = row.get("key") or row.get("custom_id") or ""
        prompt = _gemini_prompt(row.get("request") or {})
        requests.append(BatchRequest(key, prompt, request.match_info["model"], _next_fault(settings, prompt)))
    if len(requests) > settings["batch_max_requests"]:
        return _gemini_error("Too many requests in one batch.", 400, "INVALID_ARGUMENT")
    batch = _register(store, FakeBatch("gemini", uuid.uuid4().hex[:20], time.time(), requests,
                                       model=f"models/{request.match_info['model']}",
                                       display_name=str(body.get("displayName") or body.get("display_name") or ""),
                                       input_file_id=file_name))
    await asyncio.sleep(settings["batch_create_delay_s"])
    return web.json_response(_gemini_operation(request, batch))


def _gemini_operation(request: web.Request, batch: FakeBatch) -> dict:
    outcome = _status_of(request, batch)
    status = outcome["status"]
    if status in ("completed", "expired", "cancelled") and batch.output_file_id is None:
        _gemini_result_file(request, batch, outcome)
    answered = batch.requests[:outcome["answered"]]
    failed = sum(item.fault is not None for item in answered)
    ended = batch.final is not None
    metadata = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "model": batch.model, "displayName": batch.display_name, "name": f"batches/{batch.id}",
        "inputConfig": {"fileName": batch.input_file_id}, "createTime": _iso(batch.created),
        "updateTime": _iso(time.time()), "state": GEMINI_STATES[status],
        "batchStats": {"requestCount": str(len(batch.requests)), "successfulRequestCount": str(len(answered) - failed),
                       "failedRequestCount": str(failed), "pendingRequestCount": str(len(batch.requests) - len(answered))},
    }
    if ended:
        metadata["endTime"] = _iso(outcome["at"])
    if batch.output_file_id:
        metadata["output"] = {"responsesFile": f"files/{batch.output_file_id}"}
    operation = {"name": f"batches/{batch.id}", "metadata": metadata}
    if ended:
        operation["done"] = True
        if batch.output_file_id:
            operation["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main."
                                     "GenerateContentBatchOutput", "responsesFile": f"files/{batch.output_file_id}"}
    return operation


def _gemini_result_file(request: web.Request, batch: FakeBatch, outcome: dict) -> None:
    store, settings = _store(request), _settings(request)
    lines = []
    for item in batch.requests[:outcome["answered"]]:
        if item.fault is not None:
            code = ERROR_STATUS.get(item.fault, 500)
            lines.append({"key": item.custom_id, "status": {"code": 13 if code >= 500 else 3,
                                                            "message": f"fake {item.fault} error"}})
            continue
        text, prompt_tokens, completion_tokens = _reply(item, settings, batch.id)
        lines.append({"key": item.custom_id, "response": {
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": completion_tokens,
                              "totalTokenCount": prompt_tokens + completion_tokens},
            "modelVersion": batch.model.removeprefix("models/")}})
    if not lines:
        return
    file_id = uuid.uuid4().hex[:16]
    store.files[file_id] = {"bytes": "".join(json.dumps(line) + "\n" for line in lines).encode(),
                            "filename": f"batch-{batch.id}-output", "purpose": "batch_output", "created": time.time()}
    batch.output_file_id = file_id


@_gemini_auth
async def _gemini_get(request: web.Request) -> web.Response:
    _store(request).counters["batch_retrieves"] += 1
    batch = _find(request, "gemini")
    if batch is None:
        return _gemini_error("Batch not found.", 404, "NOT_FOUND")
    return web.json_response(_gemini_operation(request, batch))


@_gemini_auth
async def _gemini_cancel(request: web.Request) -> web.Response:
    batch = _find(request, "gemini")
    if batch is None:
        return _gemini_error("Batch not found.", 404, "NOT_FOUND")
    _request_cancel(request, batch)
    return web.json_response({})


@_gemini_auth
async def _gemini_file(request: web.Request) -> web.Response:
    file_id = request.match_info["file_id"]
    entry = _store(request).files.get(file_id)
    if entry is None:
        return _gemini_error("File not found.", 404, "NOT_FOUND")
    return web.json_response(_gemini_file_object(request, file_id, entry))


@_gemini_auth
async def _gemini_download(request: web.Request) -> web.Response:
    store = _store(request)
    entry = store.files.get(request.match_info["file_id"])
    if entry is None:
        return _gemini_error("File not found.", 404, "NOT_FOUND")
    if entry["purpose"] == "batch_output":
        store.counters["batch_result_downloads"] += 1
        await asyncio.sleep(_settings(request)["batch_download_delay_s"])
    return web.Response(body=entry["bytes"], content_type="application/octet-stream")


def batch_stats(store: BatchStore) -> dict:
    """Counters for /stats: how many times each custom id was submitted and answered."""
    twice = sorted(cid for cid, count in store.answered.items() if count > 1)
    return {**store.counters, "batches": len(store.batches), "batch_submitted_total": sum(store.submitted.values()),
            "batch_submitted_ids": len(store.submitted), "batch_answered_total": sum(store.answered.values()),
            "batch_answered_ids": len(store.answered), "batch_answered_twice": twice[:100],
            "batch_submitted_twice": sorted(c for c, n in store.submitted.items() if n > 1)[:100]}


def add_routes(app: web.Application) -> None:
    router = app.router
    for prefix in ("/v1", ""):
        router.add_post(f"{prefix}/files", _openai_upload)
        router.add_get(f"{prefix}/files/{{file_id}}", _openai_file)
        router.add_get(f"{prefix}/files/{{file_id}}/content", _openai_file_content)
        router.add_delete(f"{prefix}/files/{{file_id}}", _openai_file_delete)
        router.add_post(f"{prefix}/batches", _openai_create_batch)
        router.add_get(f"{prefix}/batches", _openai_list_batches)
        router.add_get(f"{prefix}/batches/{{batch_id}}", _openai_retrieve_batch)
        router.add_post(f"{prefix}/batches/{{batch_id}}/cancel", _openai_cancel_batch)
    router.add_post("/v1/messages/batches", _anthropic_create)
    router.add_get("/v1/messages/batches", _anthropic_list)
    router.add_get("/v1/messages/batches/{batch_id}", _anthropic_retrieve)
    router.add_post("/v1/messages/batches/{batch_id}/cancel", _anthropic_cancel)
    router.add_get("/v1/messages/batches/{batch_id}/results", _anthropic_results)
    router.add_post("/upload/v1beta/files", _gemini_upload)
    router.add_post("/v1beta/models/{model:[^/:]+}:batchGenerateContent", _gemini_create)
    router.add_get("/v1beta/batches/{batch_id:[^/:]+}", _gemini_get)
    router.add_post("/v1beta/batches/{batch_id:[^/:]+}:cancel", _gemini_cancel)
    router.add_get("/v1beta/files/{file_id:[^/:]+}", _gemini_file)
    router.add_get("/v1beta/files/{file_id:[^/:]+}:download", _gemini_download)  # google-genai
    router.add_get("/download/v1beta/files/{file_id:[^/:]+}:download", _gemini_download)  # LiteLLM
