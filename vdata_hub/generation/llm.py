"""Model calls: every request goes through `litellm.acompletion`, so any provider works.

Runs that stall or die on rate limits are what users of other tools complain about most, so
this module owns everything between "send this prompt" and "here is a usable reply", in the
generating process, whichever process sends the request (llm_call.py in this one, or
llm_workers.py's worker processes):
- a concurrency gate that adapts (AIMD: halve on a 429, add one per window of successes);
- client-side requests- and tokens-per-minute buckets;
- the provider's own rate-limit headers (x-ratelimit-remaining-*, reset, Retry-After), which
  pause new requests until the window resets;
- retries with exponential backoff and jitter on 429, 5xx, timeouts, connection errors and
  malformed or empty replies; a per-call timeout;
- auth errors stop the run at once with a message that never contains the key, and so does an
  endpoint that cannot be reached before it has answered once (connection refused, DNS lookup
  failed; a connect timeout on a record's second try, as a busy server may be slow to accept),
  or that has not answered for LOST_AFTER_S (or the request timeout, if longer).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from vdata_hub.errors import AuthError, EndpointUnreachable, LLMError
from vdata_hub.generation.cost import model_price
from vdata_hub.generation.llm_call import CallError, CallSettings, Reply, parse_duration
from vdata_hub.generation.spec import GenerationSpec

PROVIDER_KEY_VARIABLES = {
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY", "groq": "GROQ_API_KEY", "together_ai": "TOGETHERAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY", "openrouter": "OPENROUTER_API_KEY", "cohere": "COHERE_API_KEY",
}
MAX_RETRY_AFTER_S = 600.0
LOST_AFTER_S = 60.0  # an endpoint that answered before but has not for this long, and refuses now, is down


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


def backoff(attempt: int, base: float, maximum: float) -> float:
    """Exponential backoff with jitter: half the delay fixed, half random."""
    delay = min(maximum, base * 2 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)


class LLMClient:
    """Sends chat requests for one run: limits, retries and counters shared by every call.

    `workers=0` sends them from this process; `workers=N` from N worker processes
    (llm_workers.WorkerPool), with every limit, retry and counter still here.
    """

    def __init__(self, spec: GenerationSpec, model: str, api_base: Optional[str], api_key: Optional[str],
                 workers: int = 0):
        sampling = spec.sampling
        self.spec = spec
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        price = model_price(model)
        self.settings = CallSettings(model=model, api_base=api_base, api_key=api_key,
                                     temperature=sampling.temperature, top_p=sampling.top_p,
                                     max_tokens=sampling.max_tokens, timeout_s=spec.retries.timeout_s,
                                     concurrency=spec.concurrency,
                                     prices=(price.input_per_token, price.output_per_token))
        self.workers = workers
        self.gate = AdaptiveConcurrency(spec.concurrency)
        self.limits = RateLimits(spec.rate_limit.requests_per_minute, spec.rate_limit.tokens_per_minute)
        self.stats = CallStats()
        self.calls = None  # where requests are sent from: set by start()
        self._last_answer: Optional[float] = None  # when the endpoint last answered (monotonic); None: never

    async def start(self) -> None:
        """Load LiteLLM here, or start the worker processes (which load it)."""
        if self.workers:
            from vdata_hub.generation.llm_workers import WorkerPool

            self.calls = WorkerPool(self.settings, self.workers)
            await self.calls.start()
        else:
            from vdata_hub.generation.llm_call import LiteLLMCaller

            self.calls = LiteLLMCaller(self.settings)

    async def close(self) -> None:
        if self.calls is not None:
            await self.calls.close()

    @property
    def worker_restarts(self) -> int:
        return getattr(self.calls, "restarts", 0)

    @property
    def worker_cpu_s(self) -> float:
        """CPU seconds the worker processes spent after loading LiteLLM (0 without workers)."""
        return getattr(self.calls, "cpu_s", 0.0)

    async def complete(self, prompt: str, system_prompt: str = "", input_tokens_estimate: int = 0,
                       check: Callable[[str], Optional[str]] | None = None) -> Completion | CallFailed:
        """One reply with usable text, or why not after `retries.max_attempts` tries.

        `check(text)` may refuse a reply (returns a reason); it is retried like an empty one.
        Raises AuthError (bad key), LLMError (unknown model) and EndpointUnreachable: no record
        can succeed then.
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
            outcome = await self.calls.call(messages)
            if isinstance(outcome, CallError):
                reason, wait = self._on_error(outcome, attempt)
            else:
                self._last_answer = time.monotonic()
                result = self._on_reply(outcome, attempt, planned_tokens, check)
                if isinstance(result, Completion):
                    self.gate.on_success(time.monotonic() - started)
                    return result
                reason, wait = result, backoff(attempt, retries.backoff_base_s, retries.backoff_max_s)
            if wait is None or attempt == retries.max_attempts:
                break
            self.stats.retries += 1
            await asyncio.sleep(wait)
        return CallFailed(reason=reason, attempts=attempt)

    def _count(self, kind: str) -> None:
        self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1

    def _on_error(self, error: CallError, attempt: int) -> tuple[str, Optional[float]]:
        """(reason, seconds to wait before retrying, or None: do not retry)."""
        retries = self.spec.retries
        wait = backoff(attempt, retries.backoff_base_s, retries.backoff_max_s)
        if error.answered:
            self._last_answer = time.monotonic()
        kind = error.kind
        if kind == "auth":
            raise AuthError(f"the provider refused the API key for model {self.model!r} (HTTP {error.status or 401}); "
                            f"pass a valid key with -k/--api-key, $APIKEY or ${provider_key_variable(self.model)}")
        if kind == "not_found":
            raise LLMError(f"model {self.model!r} was not found by the provider"
                           f"{' at ' + self.api_base if self.api_base else ''}; check --model")
        if kind == "connect":
            self._count("connect_error")
            self._stop_if_unreachable(error, attempt)
            return f"cannot connect to {self._endpoint(error)}: {error.message}", wait
        if kind == "connection":
            self._count("connection_lost")
            return error.message, wait
        if kind == "worker_died":
            self._count("worker_died")
            return error.message, 0.0  # another worker (or its replacement) takes it at once
        if kind == "rate_limited":
            self.stats.rate_limited += 1
            self._count("rate_limited")
            self.gate.on_rate_limited()
            if error.retry_after is not None:
                self.limits.pause(error.retry_after)
                wait = max(wait, error.retry_after)
            return "rate limited (HTTP 429)", wait
        if kind == "timeout":
            self.stats.timeouts += 1
            self._count("timeout")
            return f"timed out after {retries.timeout_s:g} s", wait
        if kind == "bad_request":
            self._count("bad_request")
            return f"request refused: {error.message}", None
        if kind == "server":
            self.stats.server_errors += 1
            self._count(f"http_{error.status}")
            return f"server error (HTTP {error.status}): {error.message}", wait
        self.stats.bad_replies += 1
        self._count(error.message.split(":", 1)[0])
        return error.message, wait

    def _endpoint(self, error: CallError) -> str:
        return self.api_base or error.endpoint or f"the provider of model {self.model!r}"

    def _stop_if_unreachable(self, error: CallError, attempt: int) -> None:
        """A dead endpoint stops the run: retrying every record against it only hides the cause."""
        where = self._endpoint(error)
        hint = "check `api_base` and that the server is running" if self.api_base else "check the network"
        if self._last_answer is None:
            if error.slow and attempt == 1:
                return  # a server flooded with new connections may just be slow to accept them
            raise EndpointUnreachable(f"cannot reach {where}: {error.message}; {hint}")
        silent = time.monotonic() - self._last_answer
        if silent > max(LOST_AFTER_S, self.spec.retries.timeout_s):
            raise EndpointUnreachable(f"lost {where}: no answer for {silent:.0f} s, now {error.message}; {hint}; "
                                      "run the same command again to continue")

    def _on_reply(self, reply: Reply, attempt: int, planned_tokens: int, check) -> Completion | str:
        """A Completion, or the reason the reply is unusable (then retried)."""
        self._read_rate_headers(reply.rate_headers)
        self.limits.used_tokens(planned_tokens, reply.input_tokens + reply.output_tokens)
        if not reply.has_choices:
            self.stats.bad_replies += 1
            self._count("no_choices")
            return "malformed reply: no choices"
        if not reply.text:
            self.stats.bad_replies += 1
            self._count("empty_text")
            return "empty reply: no text"
        rejected = check(reply.text) if check else None
        if rejected:
            self.stats.rejected += 1
            return rejected
        return Completion(text=reply.text, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                          finish_reason=reply.finish_reason, attempts=attempt)

    def _read_rate_headers(self, headers: dict) -> None:
        """Pause new requests when the provider says a window is used up."""
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
