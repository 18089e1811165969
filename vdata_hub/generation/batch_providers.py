"""The providers' batch APIs behind one small interface: upload and submit, poll, read results, cancel.

- OpenAI and OpenAI-compatible servers (`--api-base`), `hosted_vllm/`, `litellm_proxy/`: through
  LiteLLM's files and batches API (`acreate_file`, `acreate_batch`, `aretrieve_batch`,
  `afile_content`, `acancel_batch`, `alist_batches`).
- Anthropic Message Batches: through the official `anthropic` SDK (extra `vdata-hub[anthropic]`):
  LiteLLM 1.110 can read an Anthropic batch and its results but neither create nor cancel one.
- Gemini batch jobs: through the official `google-genai` SDK (extra `vdata-hub[gemini]`): LiteLLM
  1.110 creates and polls Gemini batches from OpenAI-shaped rows, a format Google's batch
  documentation does not describe, and cannot cancel them.

Every batch carries the record id as the provider's custom id (Gemini's `key`) and a tag naming
the part of the plan it holds, so a submission whose id never reached OUT (a kill between the
provider's answer and the ledger) can be found again instead of sent twice.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import AsyncIterator, Optional

from vdata_hub.errors import AuthError, LLMError, VdataError
from vdata_hub.generation.llm import Completion, backoff

MB = 1024 * 1024
ENDED = "ended"  # BatchView.state for every terminal status


class NoBatchAPI(VdataError):
    """The model's provider has no batch API that vdata-hub can drive."""

    exit_code = 2


@dataclass(frozen=True)
class Limits:
    """What one batch may hold: the provider's documented limits (bytes a little under them)."""

    max_requests: int
    max_bytes: int


@dataclass
class BatchView:
    """What the provider says about one batch right now."""

    batch_id: str
    status: str  # the provider's own word: validating, in_progress, finalizing, ended, JOB_STATE_RUNNING...
    ended: bool
    total: int = 0
    done: Optional[int] = None  # requests answered so far, when the provider says (Anthropic: only at the end)
    outcome: str = ""  # when ended: completed | expired | cancelled | failed
    handles: dict = field(default_factory=dict)  # where the results are (file ids)
    expires_at: Optional[float] = None


@dataclass
class BatchFailure:
    """A request the batch answered without a usable reply (or did not run)."""

    reason: str
    retryable: bool = True


def _status_code(exc: BaseException) -> Optional[int]:
    for name in ("status_code", "code", "status"):
        value = getattr(exc, name, None)
        if isinstance(value, int):
            return value
    return None


def _short(exc: BaseException, api_key: Optional[str], limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    if api_key and len(api_key) >= 4:
        text = text.replace(api_key, "***")
    return text[:limit]


class Transport(ABC):
    """One provider's batch API; subclasses fill in the wire format and the calls."""

    name = ""
    through = ""  # what carries the calls: LiteLLM or an SDK
    limits = Limits(50_000, 190 * MB)

    def __init__(self, model: str, api_base: Optional[str], api_key: Optional[str], sampling):
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.sampling = sampling

    # -- wire format -----------------------------------------------------------------------
    @abstractmethod
    def request_line(self, record_id: str, prompt: str, system_prompt: str) -> bytes:
        ...

    # -- calls -----------------------------------------------------------------------------
    @abstractmethod
    async def submit(self, part: str, request_file) -> str:
        ...

    @abstractmethod
    async def view(self, batch_id: str) -> BatchView:
        ...

    @abstractmethod
    def results(self, view: BatchView) -> AsyncIterator[tuple[str, object]]:
        ...

    @abstractmethod
    async def cancel(self, batch_id: str) -> None:
        ...

    @abstractmethod
    async def find(self, part: str, count: int, since: float, known: set) -> Optional[str]:
        """The id of a batch created for `part` whose id OUT never recorded; None if there is none."""

    # -- shared ----------------------------------------------------------------------------
    async def call(self, what: str, make_call, attempts: int = 5):
        """One API call with retries on rate limits, 5xx and connection errors; auth errors stop."""
        for attempt in range(1, attempts + 1):
            try:
                return await make_call()
            except Exception as exc:  # sorted below: retry, or a one-line error
                status = _status_code(exc)
                if status in (401, 403) or type(exc).__name__ in ("AuthenticationError", "PermissionDeniedError"):
                    raise AuthError(f"the provider refused the API key for {self.name} batches (model "
                                    f"{self.model!r}); pass a valid key with -k/--api-key or $APIKEY") from None
                retryable = status is None or status >= 500 or status in (408, 409, 429)
                if not retryable or attempt == attempts:
                    raise LLMError(f"{self.name} batch API: {what} failed ({_short(exc, self.api_key)}); "
                                   "nothing is lost: run the same command again") from None
                await asyncio.sleep(backoff(attempt, 1.0, 30.0))

    def messages(self, prompt: str, system_prompt: str) -> list:
        return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            [{"role": "user", "content": prompt}]


async def _streamed_jsonl(chunks) -> AsyncIterator[dict]:
    """The JSON objects of a JSONL download that arrives in chunks, one line at a time."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield json.loads(line)
    if pending.strip():
        yield json.loads(pending)


def _jsonl(content: bytes):
    """The JSON objects of a downloaded JSONL file, one line at a time (no list of lines)."""
    for line in io.BytesIO(content):
        if line.strip():
            yield json.loads(line)


# The providers' own stop reasons in the words LiteLLM uses for real-time replies, so a record's
# finish_reason does not depend on the transport.
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "STOP": "stop",
                  "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}


def _text_reply(text: str, input_tokens: int, output_tokens: int, finish_reason: str) -> object:
    text = (text or "").strip()
    if not text:
        return BatchFailure("empty reply: no text")
    reason = str(finish_reason or "")
    return Completion(text=text, input_tokens=int(input_tokens or 0), output_tokens=int(output_tokens or 0),
                      finish_reason=FINISH_REASONS.get(reason, reason), attempts=1)


def _http_failure(status: int, message: str) -> BatchFailure:
    retryable = status >= 500 or status in (408, 409, 429)
    return BatchFailure(f"HTTP {status}: {message}"[:300], retryable)


# ---------------------------------------------------------------------------------------------


class OpenAITransport(Transport):
    """OpenAI's Batch API (and any server that speaks it) through LiteLLM."""

    name = "OpenAI"
    through = "LiteLLM"
    limits = Limits(50_000, 190 * MB)  # documented: 50,000 requests and 200 MB per input file
    endpoint = "/v1/chat/completions"

    def __init__(self, model, api_base, api_key, sampling, provider: str = "openai"):
        super().__init__(model, api_base, api_key, sampling)
        from vdata_hub.generation.llm_call import import_litellm

        self.litellm = import_litellm()
        # LiteLLM 1.110's afile_content leaves one coroutine of its own unawaited (the content
        # arrives, downloaded once); its warning would only alarm the user
        warnings.filterwarnings("ignore", message="coroutine 'OpenAIFilesAPI.afile_content.*' was never awaited",
                                category=RuntimeWarning)
        self.provider = provider
        self.wire_model = model.split("/", 1)[1] if model.startswith(provider + "/") else model

    def _auth(self) -> dict:
        return {"custom_llm_provider": self.provider, "api_base": self.api_base, "api_key": self.api_key}

    def request_line(self, record_id, prompt, system_prompt) -> bytes:
        body = {"model": self.wire_model, "messages": self.messages(prompt, system_prompt),
                "temperature": self.sampling.temperature, "top_p": self.sampling.top_p,
                "max_tokens": self.sampling.max_tokens}
        return json.dumps({"custom_id": record_id, "method": "POST", "url": self.endpoint, "body": body},
                          ensure_ascii=False).encode() + b"\n"

    async def submit(self, part, request_file) -> str:
        uploaded = await self.call("uploading the requests", lambda: self.litellm.acreate_file(
            file=(f"vdata-{part}.jsonl", request_file), purpose="batch", **self._auth()))
        batch = await self.call("creating the batch", lambda: self.litellm.acreate_batch(
            completion_window="24h", endpoint=self.endpoint, input_file_id=uploaded.id,
            metadata={"vdata_part": part}, **self._auth()))
        return batch.id

    async def view(self, batch_id) -> BatchView:
        batch = await self.call("reading the batch", lambda: self.litellm.aretrieve_batch(
            batch_id=batch_id, **self._auth()))
        counts = batch.request_counts
        ended = batch.status in ("completed", "expired", "cancelled", "failed")
        outcome = {"completed": "completed", "expired": "expired", "cancelled": "cancelled",
                   "failed": "failed"}.get(batch.status, "")
        errors = [getattr(e, "message", "") for e in (getattr(batch.errors, "data", None) or [])]
        return BatchView(batch_id, batch.status, ended, total=getattr(counts, "total", 0) or 0,
                         done=((counts.completed or 0) + (counts.failed or 0)) if counts else None,
                         outcome=outcome, expires_at=batch.expires_at,
                         handles={"files": [f for f in (batch.output_file_id, batch.error_file_id) if f],
                                  "errors": errors})

    async def results(self, view):
        """Each result line as it downloads (a 50,000-request batch is ~60 MB: never all at once)."""
        for file_id in view.handles.get("files", []):
            download = await self.call("downloading results", lambda: self.litellm.afile_content(
                file_id=file_id, stream=True, chunk_size=1 << 20, **self._auth()))
            async for row in _streamed_jsonl(download.stream_iterator):
                yield row.get("custom_id", ""), self.parse(row)

    @staticmethod
    def parse(row: dict) -> object:
        error = row.get("error")
        response = row.get("response") or {}
        if error:
            return BatchFailure(f"{error.get('code')}: {error.get('message')}")
        status = int(response.get("status_code") or 0)
        body = response.get("body") or {}
        if status != 200:
            return _http_failure(status, str((body.get("error") or {}).get("message", body)))
        choices = body.get("choices") or []
        if not choices:
            return BatchFailure("malformed reply: no choices")
        usage = body.get("usage") or {}
        return _text_reply((choices[0].get("message") or {}).get("content"),
                           usage.get("prompt_tokens", usage.get("promptTokens", 0)),
                           usage.get("completion_tokens", usage.get("completionTokens", 0)),
                           choices[0].get("finish_reason"))

    async def cancel(self, batch_id) -> None:
        await self.call("cancelling", lambda: self.litellm.acancel_batch(batch_id=batch_id, **self._auth()))

    async def find(self, part, count, since, known) -> Optional[str]:
        after = None
        while True:
            options = {"limit": 100, **({"after": after} if after else {})}
            page = await self.call("listing batches", lambda: self.litellm.alist_batches(**options, **self._auth()))
            for batch in page.data:
                if (batch.metadata or {}).get("vdata_part") == part and batch.id not in known:
                    return batch.id
            if not page.data or not page.has_more or page.data[-1].created_at < since - 3600:
                return None
            after = page.data[-1].id


class AnthropicTransport(Transport):
    """Anthropic's Message Batches through the official SDK (extra `vdata-hub[anthropic]`)."""

    name = "Anthropic"
    through = "the anthropic SDK"
    # documented: 100,000 requests or 256 MB per batch; the SDK sends a batch as one JSON body
    # built in memory, so vdata-hub sends at most 25,000 requests (~35 MB) in each
    limits = Limits(25_000, 240 * MB)

    def __init__(self, model, api_base, api_key, sampling):
        super().__init__(model, api_base, api_key, sampling)
        try:
            import anthropic
        except ImportError:
            raise NoBatchAPI("Anthropic batches need the anthropic SDK: pip install 'vdata-hub[anthropic]' "
                             "(or run without --batch)") from None
        self.wire_model = model.split("/", 1)[1] if model.startswith("anthropic/") else model
        self.client = anthropic.AsyncAnthropic(api_key=api_key or os.environ.get("ANTHROPIC_API_KEY"),
                                               base_url=api_base or None, max_retries=0)  # call() retries

    def request_line(self, record_id, prompt, system_prompt) -> bytes:
        params = {"model": self.wire_model, "max_tokens": self.sampling.max_tokens,
                  "messages": [{"role": "user", "content": prompt}],
                  "temperature": self.sampling.temperature, "top_p": self.sampling.top_p}
        if system_prompt:
            params["system"] = system_prompt
        return json.dumps({"custom_id": record_id, "params": params}, ensure_ascii=False).encode() + b"\n"

    async def submit(self, part, request_file) -> str:
        requests = [json.loads(line) for line in request_file if line.strip()]
        batch = await self.call("creating the batch", lambda: self.client.messages.batches.create(requests=requests))
        return batch.id

    async def view(self, batch_id) -> BatchView:
        batch = await self.call("reading the batch", lambda: self.client.messages.batches.retrieve(batch_id))
        counts = batch.request_counts
        total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
        ended = batch.processing_status == "ended"
        outcome = ""
        if ended:
            outcome = "cancelled" if counts.canceled else ("expired" if counts.expired else "completed")
        return BatchView(batch_id, batch.processing_status, ended, total=total,
                         done=total - counts.processing if ended else None, outcome=outcome,
                         expires_at=batch.expires_at.timestamp() if batch.expires_at else None)

    async def results(self, view):
        decoder = await self.call("downloading results", lambda: self.client.messages.batches.results(view.batch_id))
        async for item in decoder:
            yield item.custom_id, self.parse(item.result)

    @staticmethod
    def parse(result) -> object:
        kind = result.type
        if kind == "succeeded":
            message = result.message
            text = "".join(getattr(block, "text", "") for block in message.content)
            return _text_reply(text, message.usage.input_tokens, message.usage.output_tokens, message.stop_reason)
        if kind == "errored":
            error = getattr(getattr(result, "error", None), "error", None)
            error_type = getattr(error, "type", "api_error")
            return BatchFailure(f"{error_type}: {getattr(error, 'message', '')}"[:300],
                                retryable=error_type != "invalid_request_error")
        return BatchFailure(f"not answered: request {kind}")

    async def cancel(self, batch_id) -> None:
        await self.call("cancelling", lambda: self.client.messages.batches.cancel(batch_id))

    async def find(self, part, count, since, known) -> Optional[str]:
        """Anthropic batches carry no tag: the newest unknown batch of the same size made since the
        intent; collecting keeps only the custom ids of this part, so a stranger's batch costs nothing."""
        async for batch in self.client.messages.batches.list(limit=100):
            created = batch.created_at.timestamp()
            if created < since - 3600:
                return None
            counts = batch.request_counts
            size = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
            if created >= since - 60 and size == count and batch.id not in known:
                return batch.id
        return None


class GeminiTransport(Transport):
    """Gemini batch jobs through the official google-genai SDK (extra `vdata-hub[gemini]`)."""

    name = "Gemini"
    through = "the google-genai SDK"
    limits = Limits(50_000, 1900 * MB)  # documented: input files up to 2 GB; 50,000 a batch is our choice
    ended_states = {"JOB_STATE_SUCCEEDED": "completed", "JOB_STATE_FAILED": "failed",
                    "JOB_STATE_CANCELLED": "cancelled", "JOB_STATE_EXPIRED": "expired"}

    def __init__(self, model, api_base, api_key, sampling):
        super().__init__(model, api_base, api_key, sampling)
        try:
            from google import genai
            from google.genai import types
        except ImportError:
            raise NoBatchAPI("Gemini batches need the google-genai SDK: pip install 'vdata-hub[gemini]' "
                             "(or run without --batch)") from None
        self.types = types
        self.wire_model = model.split("/", 1)[1] if "/" in model else model
        options = types.HttpOptions(api_version="v1beta", base_url=api_base or None)
        key = api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        self.client = genai.Client(api_key=key, http_options=options).aio

    def request_line(self, record_id, prompt, system_prompt) -> bytes:
        request = {"contents": [{"role": "user", "parts": [{"text": prompt}]}],
                   "generationConfig": {"temperature": self.sampling.temperature, "topP": self.sampling.top_p,
                                        "maxOutputTokens": self.sampling.max_tokens}}
        if system_prompt:
            request["systemInstruction"] = {"parts": [{"text": system_prompt}]}
        return json.dumps({"key": record_id, "request": request}, ensure_ascii=False).encode() + b"\n"

    async def submit(self, part, request_file) -> str:
        config = self.types.UploadFileConfig(display_name=f"vdata-{part}", mime_type="jsonl")
        uploaded = await self.call("uploading the requests", lambda: self.client.files.upload(
            file=request_file, config=config))
        job = await self.call("creating the batch", lambda: self.client.batches.create(
            model=self.wire_model, src=uploaded.name, config={"display_name": f"vdata-{part}"}))
        return job.name

    async def view(self, batch_id) -> BatchView:
        job = await self.call("reading the batch", lambda: self.client.batches.get(name=batch_id))
        state = job.state.name if job.state is not None else "JOB_STATE_PENDING"
        outcome = self.ended_states.get(state, "")
        dest = getattr(job.dest, "file_name", None) if job.dest else None
        return BatchView(batch_id, state, bool(outcome), outcome=outcome, handles={"files": [dest] if dest else []})

    async def results(self, view):
        for file_name in view.handles.get("files", []):
            content = await self.call("downloading results", lambda: self.client.files.download(file=file_name))
            for row in _jsonl(content):
                yield row.get("key", ""), self.parse(row)

    @staticmethod
    def parse(row: dict) -> object:
        response = row.get("response")
        if not response:
            status = row.get("status") or row.get("error") or {}
            return BatchFailure(f"error {status.get('code')}: {status.get('message')}"[:300],
                                retryable=status.get("code") != 3)  # 3: INVALID_ARGUMENT
        candidates = response.get("candidates") or []
        if not candidates:
            return BatchFailure("malformed reply: no candidates")
        parts = (candidates[0].get("content") or {}).get("parts") or []
        usage = response.get("usageMetadata") or {}
        output_tokens = int(usage.get("candidatesTokenCount", 0)) + int(usage.get("thoughtsTokenCount", 0))
        return _text_reply("".join(part.get("text", "") for part in parts), usage.get("promptTokenCount", 0),
                           output_tokens, candidates[0].get("finishReason"))

    async def cancel(self, batch_id) -> None:
        await self.call("cancelling", lambda: self.client.batches.cancel(name=batch_id))

    async def find(self, part, count, since, known) -> Optional[str]:
        pager = await self.call("listing batches", lambda: self.client.batches.list(config={"page_size": 100}))
        async for job in pager:
            if job.display_name == f"vdata-{part}" and job.name not in known:
                return job.name
        return None


def transport_for(model: str, api_base: Optional[str], api_key: Optional[str], sampling) -> Transport:
    """The batch transport of a model's provider; NoBatchAPI (one line) when there is none."""
    from vdata_hub.generation.local_model import is_local

    if is_local(model):
        raise NoBatchAPI(f"model {model!r} runs on this machine and has no batch API; run without --batch")
    provider = model.split("/", 1)[0] if "/" in model else ""
    if not provider:
        from vdata_hub.generation.llm_call import import_litellm

        try:
            provider = import_litellm().get_llm_provider(model, api_base=api_base)[1]
        except Exception:  # LiteLLM cannot place the model: say so in our words below
            provider = "unknown"
    if provider in ("openai", "hosted_vllm", "litellm_proxy"):
        return OpenAITransport(model, api_base, api_key, sampling, provider)
    if provider == "anthropic":
        return AnthropicTransport(model, api_base, api_key, sampling)
    if provider == "gemini":
        return GeminiTransport(model, api_base, api_key, sampling)
    raise NoBatchAPI(f"provider {provider!r} of model {model!r} has no batch API that vdata-hub supports "
                     "(OpenAI and OpenAI-compatible, Anthropic, Gemini); run without --batch for real-time mode")
