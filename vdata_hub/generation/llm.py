"""Model calls: every request goes through `litellm.acompletion`, so any provider works.

Runs that stall or die on rate limits are what users of other tools complain about most, so
this module owns everything between "send this prompt" and "here is a usable reply":
- a concurrency gate that adapts (AIMD: halve on a 429, add one per window of successes);
- client-side requests- and tokens-per-minute buckets;
- the provider's own rate-limit headers (x-ratelimit-remaining-*, reset, Retry-After), which
  pause new requests until the window resets;
- retries with exponential backoff and jitter on 429, 5xx, timeouts, connection errors and
  malformed or empty replies; a per-call timeout;
- auth errors stop the run at once with a message that never contains the key.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from vdata_hub.errors import AuthError, LLMError
from vdata_hub.generation.spec import GenerationSpec

PROVIDER_KEY_VARIABLES = {
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY", "groq": "GROQ_API_KEY", "together_ai": "TOGETHERAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY", "openrouter": "OPENROUTER_API_KEY", "cohere": "COHERE_API_KEY",
}
MAX_RETRY_AFTER_S = 600.0
_frozen = False


def import_litellm():
    """LiteLLM, quiet: the local price map, no telemetry, no debug output, no callbacks.

    The first time, the garbage collector is told to leave what exists by then alone
    (`gc.freeze`): LiteLLM's import leaves ~180 MB of long-lived objects, and every full
    collection walked them all again, about 0.5 ms of CPU per call at full speed (cut to ~0.15).
    """
    global _frozen
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.drop_params = True  # providers that lack top_p etc. still work
    for name in ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router", "litellm", "httpx", "openai"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not _frozen:
        _frozen = True
        gc.collect()  # garbage left by the import is freed, not frozen
        gc.freeze()
    return litellm


def provider_key_variable(model: str) -> str:
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    return PROVIDER_KEY_VARIABLES.get(provider, f"{provider.upper()}_API_KEY")


def resolve_api_key(api_key: Optional[str], model: str, api_base: Optional[str]) -> Optional[str]:
    """-k/--api-key, else $APIKEY, else None so LiteLLM reads the provider's own variable.

    A self-hosted OpenAI-compatible server (api_base given) often needs no key; the OpenAI
    client refuses to send none, so a placeholder goes instead.
    """
    key = api_key or os.environ.get("APIKEY")
    if key:
        return key
    if api_base and not os.environ.get(provider_key_variable(model)):
        return "no-key"
    return None


@dataclass
class Completion:
    """A usable reply."""

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str
    attempts: int


@dataclass
class CallFailed:
    """A request that still failed after every retry (or could not be retried)."""

    reason: str
    attempts: int


@dataclass
class CallStats:
    """Counters for the run summary and the tests."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    timeouts: int = 0
    server_errors: int = 0
    bad_replies: int = 0
    rejected: int = 0  # replies the caller's check refused (quality)
    header_pauses: int = 0
    errors: dict = field(default_factory=dict)  # reason kind -> count


class AdaptiveConcurrency:
    """A gate of `limit` slots that halves on rate limits and grows back by one per window.

    One decrease per round trip at most: a burst of 429s from requests that were all sent
    before the first one came back is one signal, not fifty.
    """

    def __init__(self, maximum: int):
        self.maximum = maximum
        self.limit = float(maximum)
        self.min_limit = float(maximum)
        self.in_flight = 0
        self.decreases = 0
        self._freed = asyncio.Event()
        self._last_decrease = 0.0
        self._latency = 0.2  # moving average of call latency, the cool-down between decreases

    async def acquire(self) -> None:
        while self.in_flight >= int(self.limit):
            self._freed.clear()
            await self._freed.wait()
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._freed.set()

    def on_success(self, latency: float) -> None:
        self._latency = 0.9 * self._latency + 0.1 * latency
        self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)

    def on_rate_limited(self) -> None:
        now = time.monotonic()
        if now - self._last_decrease < max(0.1, self._latency):
            return
        self._last_decrease = now
        self.limit = max(1.0, self.limit / 2)
        self.min_limit = min(self.min_limit, self.limit)
        self.decreases += 1


class Bucket:
    """Token bucket refilled at `per_minute`; may go negative when a reply used more than planned."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)  # at most ten seconds' worth in one burst
        self.level = self.capacity
        self._updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    async def take(self, amount: float) -> None:
        amount = min(amount, self.capacity)
        while True:
            self._refill()
            if self.level >= amount:
                self.level -= amount
                return
            await asyncio.sleep((amount - self.level) / self.rate)

    def adjust(self, extra: float) -> None:
        self._refill()
        self.level -= extra


class RateLimits:
    """Client-side RPM/TPM buckets plus pauses the provider asks for (headers, Retry-After)."""

    def __init__(self, requests_per_minute: Optional[int], tokens_per_minute: Optional[int]):
        self.requests = Bucket(requests_per_minute) if requests_per_minute else None
        self.tokens = Bucket(tokens_per_minute) if tokens_per_minute else None
        self.pause_until = 0.0

    async def wait_turn(self, tokens: int) -> None:
        while (delay := self.pause_until - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        if self.requests:
            await self.requests.take(1)
        if self.tokens:
            await self.tokens.take(tokens)

    def used_tokens(self, planned: int, actual: int) -> None:
        if self.tokens:
            self.tokens.adjust(actual - planned)

    def pause(self, seconds: float) -> None:
        self.pause_until = max(self.pause_until, time.monotonic() + min(seconds, MAX_RETRY_AFTER_S))


def parse_duration(value) -> Optional[float]:
    """Seconds from `Retry-After` (seconds or an HTTP date) or OpenAI's reset ("6m0s", "20ms")."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if parts and "".join(n + u for n, u in parts) == text.replace(" ", ""):
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        return sum(float(n) * scale[u] for n, u in parts)
    try:
        when = email.utils.parsedate_to_datetime(text)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _normalized_headers(headers) -> dict:
    if not headers:
        return {}
    try:
        items = headers.items()
    except AttributeError:
        return {}
    return {str(k).lower().removeprefix("llm_provider-"): v for k, v in items}


def _error_headers(exc: Exception) -> dict:
    headers = getattr(exc, "litellm_response_headers", None)
    if not headers:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    return _normalized_headers(headers)


def retry_after(headers: dict) -> Optional[float]:
    if "retry-after-ms" in headers:
        seconds = parse_duration(headers["retry-after-ms"])
        return None if seconds is None else seconds / 1000
    return parse_duration(headers.get("retry-after"))


def backoff(attempt: int, base: float, maximum: float) -> float:
    """Exponential backoff with jitter: half the delay fixed, half random."""
    delay = min(maximum, base * 2 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)


class LLMClient:
    """Sends chat requests for one run: limits, retries and counters shared by every call."""

    def __init__(self, spec: GenerationSpec, model: str, api_base: Optional[str], api_key: Optional[str]):
        self.litellm = import_litellm()
        self.spec = spec
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.gate = AdaptiveConcurrency(spec.concurrency)
        self.limits = RateLimits(spec.rate_limit.requests_per_minute, spec.rate_limit.tokens_per_minute)
        self.stats = CallStats()
        self._exceptions = self._exception_classes()

    def _exception_classes(self) -> dict:
        ll = self.litellm
        return {
            "auth": (ll.AuthenticationError, ll.PermissionDeniedError),
            "not_found": (ll.NotFoundError,),
            "rate": (ll.RateLimitError,),
            "timeout": (ll.Timeout, asyncio.TimeoutError, TimeoutError),
            "bad_request": (ll.BadRequestError, ll.UnprocessableEntityError),
        }

    async def complete(self, prompt: str, system_prompt: str = "", input_tokens_estimate: int = 0,
                       check: Callable[[str], Optional[str]] | None = None) -> Completion | CallFailed:
        """One reply with usable text, or why not after `retries.max_attempts` tries.

        `check(text)` may refuse a reply (returns a reason); it is retried like an empty one.
        Raises AuthError (bad key) and LLMError (unknown model): no record can succeed then.
        """
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            [{"role": "user", "content": prompt}]
        retries = self.spec.retries
        planned_tokens = input_tokens_estimate + self.spec.sampling.max_tokens
        reason = "no attempt"
        for attempt in range(1, retries.max_attempts + 1):
            await self.limits.wait_turn(planned_tokens)
            self.stats.requests += 1
            started = time.monotonic()
            try:
                reply = await asyncio.wait_for(self._send(messages), retries.timeout_s + 5)
            except Exception as exc:  # sorted below: retry, fail the record, or stop the run
                reason, wait = self._on_error(exc, attempt)
            else:
                result = self._on_reply(reply, attempt, planned_tokens, check)
                if isinstance(result, Completion):
                    self.gate.on_success(time.monotonic() - started)
                    return result
                reason, wait = result, backoff(attempt, retries.backoff_base_s, retries.backoff_max_s)
            if wait is None or attempt == retries.max_attempts:
                break
            self.stats.retries += 1
            await asyncio.sleep(wait)
        return CallFailed(reason=reason, attempts=attempt)

    async def _send(self, messages: list[dict]):
        sampling = self.spec.sampling
        return await self.litellm.acompletion(
            model=self.model, messages=messages, api_base=self.api_base, api_key=self.api_key,
            temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens,
            timeout=self.spec.retries.timeout_s, max_retries=0, num_retries=0,
        )

    def _count(self, kind: str) -> None:
        self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1

    def _on_error(self, exc: Exception, attempt: int) -> tuple[str, Optional[float]]:
        """(reason, seconds to wait before retrying, or None: do not retry)."""
        kinds = self._exceptions
        retries = self.spec.retries
        wait = backoff(attempt, retries.backoff_base_s, retries.backoff_max_s)
        if isinstance(exc, kinds["auth"]):
            status = getattr(exc, "status_code", 401)
            raise AuthError(f"the provider refused the API key for model {self.model!r} (HTTP {status}); "
                            f"pass a valid key with -k/--api-key, $APIKEY or ${provider_key_variable(self.model)}"
                            ) from None
        if isinstance(exc, kinds["not_found"]):
            raise LLMError(f"model {self.model!r} was not found by the provider"
                           f"{' at ' + self.api_base if self.api_base else ''}; check --model") from None
        if isinstance(exc, kinds["rate"]):
            self.stats.rate_limited += 1
            self._count("rate_limited")
            self.gate.on_rate_limited()
            after = retry_after(_error_headers(exc))
            if after is not None:
                self.limits.pause(after)
                wait = max(wait, after)
            return "rate limited (HTTP 429)", wait
        if isinstance(exc, kinds["timeout"]):
            self.stats.timeouts += 1
            self._count("timeout")
            return f"timed out after {retries.timeout_s:g} s", wait
        if isinstance(exc, kinds["bad_request"]):
            self._count("bad_request")
            return f"request refused: {self._short(exc)}", None
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and status >= 500:
            self.stats.server_errors += 1
            self._count(f"http_{status}")
            return f"server error (HTTP {status}): {self._short(exc)}", wait
        self.stats.bad_replies += 1
        self._count(type(exc).__name__)
        return f"{type(exc).__name__}: {self._short(exc)}", wait

    def _on_reply(self, reply, attempt: int, planned_tokens: int, check) -> Completion | str:
        """A Completion, or the reason the reply is unusable (then retried)."""
        self._read_rate_headers(reply)
        usage = getattr(reply, "usage", None)
        input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        self.limits.used_tokens(planned_tokens, input_tokens + output_tokens)
        choices = getattr(reply, "choices", None) or []
        if not choices:
            self.stats.bad_replies += 1
            self._count("no_choices")
            return "malformed reply: no choices"
        message = getattr(choices[0], "message", None)
        text = (getattr(message, "content", None) or "").strip()
        if not text:
            self.stats.bad_replies += 1
            self._count("empty_text")
            return "empty reply: no text"
        rejected = check(text) if check else None
        if rejected:
            self.stats.rejected += 1
            return rejected
        return Completion(text=text, input_tokens=input_tokens, output_tokens=output_tokens,
                          finish_reason=str(getattr(choices[0], "finish_reason", "") or ""), attempts=attempt)

    def _read_rate_headers(self, reply) -> None:
        """Pause new requests when the provider says a window is used up."""
        hidden = getattr(reply, "_hidden_params", None) or {}
        headers = _normalized_headers(hidden.get("additional_headers"))
        for kind in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is None:
                continue
            try:
                exhausted = float(remaining) < (1 if kind == "requests" else self.spec.sampling.max_tokens)
            except ValueError:
                continue
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
            if exhausted and reset:
                self.stats.header_pauses += 1
                self.limits.pause(reset)

    def _short(self, exc: Exception, limit: int = 200) -> str:
        """One line of an error message for the failures file, never with the key in it."""
        text = " ".join(str(exc).split())
        if self.api_key and len(self.api_key) >= 4:
            text = text.replace(self.api_key, "***")
        return text[:limit] + ("…" if len(text) > limit else "")
