"""One chat request through `litellm.acompletion`, and what came back in plain data.

The same code runs in the generating process (`workers=0`) and in each worker process
(llm_workers.py): it sends one request and turns LiteLLM's reply or exception into a `Reply` or a
`CallError`, small picklable records that carry what the client (llm.py) decides on: the text
and token counts, the provider's rate-limit headers, the kind of error and its status. Every
decision (retry, back off, pause, stop the run) stays with the client, in one process.

Connection failures are told apart here. LiteLLM reports "connection refused" as an HTTP 500
(InternalServerError), so the exception's cause chain is read: no connection could be made
(refused, DNS lookup failed, connect timeout) is `connect`; a connection that dropped mid-request
is `connection`; a reply that did not come in time is `timeout`.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

# A host that does not answer the TCP handshake is dead, not slow: waiting the whole request
# timeout for it (120 s by default) would leave a run with a wrong --api-base hanging.
CONNECT_TIMEOUT_S = 10.0
# LiteLLM's aiohttp pool holds at most 1,000 connections and 500 to one host (its defaults, read
# from these variables when it is imported): above that concurrency, requests queue for a connection.
POOL_LIMIT_VARIABLES = ("AIOHTTP_CONNECTOR_LIMIT", "AIOHTTP_CONNECTOR_LIMIT_PER_HOST")
_frozen = False


def pool_limits(concurrency: int) -> dict[str, str]:
    """Environment for LiteLLM's import: a connection pool that holds `concurrency` requests to one
    host (values the user set are kept)."""
    return {name: os.environ.get(name, str(max(1000, concurrency))) for name in POOL_LIMIT_VARIABLES}


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


@dataclass(frozen=True)
class CallSettings:
    """Everything a request needs besides its messages; sent once to each worker."""

    model: str
    api_base: Optional[str]
    api_key: Optional[str]
    temperature: float
    top_p: float
    max_tokens: int
    timeout_s: float
    concurrency: int = 1000  # requests in flight at most: the size of LiteLLM's connection pool
    # (input, output) USD per token, looked up once (vdata_hub.generation.cost prices the records;
    # 0 for a model the price map lacks). Given to LiteLLM, it skips its own price lookup on every
    # call: -10% of its CPU per call (bench/profile_litellm_call.py, docs/benchmarks.md)
    prices: Optional[tuple] = None

    def litellm_kwargs(self) -> dict:
        import httpx

        kwargs = dict(model=self.model, api_base=self.api_base, api_key=self.api_key, temperature=self.temperature,
                      top_p=self.top_p, max_tokens=self.max_tokens, max_retries=0, num_retries=0,
                      timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, CONNECT_TIMEOUT_S)))
        if self.prices is not None:
            kwargs.update(input_cost_per_token=self.prices[0], output_cost_per_token=self.prices[1])
        return kwargs


@dataclass
class Reply:
    """An HTTP reply that parsed as a chat completion (its text may still be empty)."""

    text: str
    has_choices: bool
    finish_reason: str
    input_tokens: int
    output_tokens: int
    rate_headers: dict = field(default_factory=dict)  # x-ratelimit-*, lower case


@dataclass
class CallError:
    """Why a request got no reply. `kind` is one of ERROR_KINDS; `message` is one line, no key."""

    kind: str
    message: str
    status: Optional[int] = None
    retry_after: Optional[float] = None  # seconds the provider asked to wait (429)
    endpoint: Optional[str] = None  # host:port that could not be reached (kind `connect`)
    slow: bool = False  # kind `connect`: the handshake timed out (a dead host, or a busy server)

    @property
    def answered(self) -> bool:
        """True when the endpoint itself sent this answer (so it is reachable)."""
        return self.kind not in UNANSWERED_KINDS


ERROR_KINDS = ("auth", "not_found", "rate_limited", "bad_request", "server", "other",
               "connect", "connection", "timeout", "worker_died")
UNANSWERED_KINDS = frozenset({"connect", "connection", "timeout", "worker_died"})


class LiteLLMCaller:
    """Sends requests with one set of settings; LiteLLM keeps its HTTP connections between them."""

    def __init__(self, settings: CallSettings):
        if "litellm" not in sys.modules:  # else its pool's size is already set
            os.environ.update(pool_limits(settings.concurrency))
        self.litellm = import_litellm()
        self.settings = settings
        self.kwargs = settings.litellm_kwargs()
        self.classify = ErrorClassifier(self.litellm, settings.api_key)

    async def call(self, messages: list[dict]) -> Reply | CallError:
        try:
            reply = await asyncio.wait_for(self.litellm.acompletion(messages=messages, **self.kwargs),
                                           self.settings.timeout_s + 5)
        except Exception as exc:  # every failure becomes data; the client decides what it means
            return self.classify(exc)
        return digest_reply(reply)

    async def close(self) -> None:
        """Nothing to stop: LiteLLM's connections close with the event loop."""


def digest_reply(reply) -> Reply:
    usage = getattr(reply, "usage", None)
    choices = getattr(reply, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    hidden = getattr(reply, "_hidden_params", None) or {}
    headers = normalized_headers(hidden.get("additional_headers"))
    return Reply(
        text=(getattr(message, "content", None) or "").strip(),
        has_choices=bool(choices),
        finish_reason=str(getattr(choices[0], "finish_reason", "") or "") if choices else "",
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        rate_headers={k: v for k, v in headers.items() if k.startswith("x-ratelimit-")},
    )


def normalized_headers(headers) -> dict:
    if not headers:
        return {}
    try:
        items = headers.items()
    except AttributeError:
        return {}
    return {str(k).lower().removeprefix("llm_provider-"): v for k, v in items}


class ErrorClassifier:
    """LiteLLM exception -> CallError, reading the cause chain for network failures."""

    def __init__(self, litellm, api_key: Optional[str]):
        import aiohttp
        import httpx

        self.api_key = api_key
        self.by_class = [
            ((litellm.AuthenticationError, litellm.PermissionDeniedError), "auth"),
            ((litellm.NotFoundError,), "not_found"),
            ((litellm.RateLimitError,), "rate_limited"),
            ((litellm.Timeout, asyncio.TimeoutError, TimeoutError), "timeout"),
            ((litellm.BadRequestError, litellm.UnprocessableEntityError), "bad_request"),
        ]
        self.connect_timeouts = (httpx.ConnectTimeout, aiohttp.ConnectionTimeoutError)
        self.dns_failures = (aiohttp.ClientConnectorDNSError,)
        self.connect_failures = (aiohttp.ClientConnectorError, httpx.ConnectError, ConnectionRefusedError)
        self.dropped = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, httpx.RemoteProtocolError,
                        httpx.ReadError, httpx.WriteError, ConnectionError)

    def __call__(self, exc: BaseException) -> CallError:
        network = self._network_error(exc)
        if network is not None:
            return network
        status = getattr(exc, "status_code", None)
        status = status if isinstance(status, int) else None
        for classes, kind in self.by_class:
            if isinstance(exc, classes):
                retry = retry_after(error_headers(exc)) if kind == "rate_limited" else None
                return CallError(kind, self.short(exc), status, retry_after=retry)
        if status is not None and status >= 500:
            return CallError("server", self.short(exc), status)
        return CallError("other", f"{type(exc).__name__}: {self.short(exc)}", status)

    def _network_error(self, exc: BaseException) -> Optional[CallError]:
        chain = list(_cause_chain(exc))
        endpoint = next((f"{e.host}:{e.port}" for e in chain if hasattr(e, "host") and hasattr(e, "port")), None)
        for kinds, detail in ((self.connect_timeouts, "connect timed out"), (self.dns_failures, "DNS lookup failed"),
                              ((ConnectionRefusedError,), "connection refused"), (self.connect_failures, "cannot connect")):
            if any(isinstance(e, kinds) for e in chain):
                why = next((e.strerror for e in chain if isinstance(e, OSError) and e.strerror), None)
                if why and detail in ("DNS lookup failed", "cannot connect"):
                    detail = f"{detail}: {self.short(why, 120)}"
                return CallError("connect", detail, endpoint=endpoint, slow=detail == "connect timed out")
        found = next((e for e in chain if isinstance(e, self.dropped)), None)
        if found is not None:
            return CallError("connection", f"connection lost: {self.short(found, 120)}")
        return None

    def short(self, exc: BaseException, limit: int = 200) -> str:
        """One line of an error message for the failures file, never with the key in it."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self.api_key and len(self.api_key) >= 4:
            text = text.replace(self.api_key, "***")
        return text[:limit] + ("…" if len(text) > limit else "")


def _cause_chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def error_headers(exc: BaseException) -> dict:
    headers = getattr(exc, "litellm_response_headers", None)
    if not headers:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    return normalized_headers(headers)


def retry_after(headers: dict) -> Optional[float]:
    if "retry-after-ms" in headers:
        seconds = parse_duration(headers["retry-after-ms"])
        return None if seconds is None else seconds / 1000
    return parse_duration(headers.get("retry-after"))


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
