"""The fake server: an aiohttp app whose behaviour is one mutable `FakeLLM` state.

Faults are queued (`faults=[["429", 2], ["500", 1]]` serves two 429s then one 500, then normal
replies), or tied to prompts (`fail_matching={"cursed": "500"}` fails every prompt containing
"cursed"), or come from load (`max_concurrent=4` answers 429 above four requests in flight).
Latency is fixed (`latency=0.2`) or drawn for each reply from a log-normal with that median
(`latency=2, latency_sigma=0.75`: most replies near 2 s, a long tail of slow ones).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import time

from aiohttp import web

from tests.fake_llm.batches import BATCH_DEFAULTS, BatchStore, add_routes, batch_stats

STATE = web.AppKey("state", object)
# Connections waiting to be accepted (aiohttp's default is 128): a client opening 1,024 at once
# would otherwise see SYNs dropped and connects delayed by seconds, a limit of this server, not of
# the client under test.
BACKLOG = 4096
FAULT_KINDS = ("429", "500", "hang", "html", "empty", "empty_text", "401", "disconnect")
DEFAULTS = {
    "latency": 0.0,  # seconds before each reply (the median when latency_sigma > 0)
    "latency_sigma": 0.0,  # > 0: each reply's latency is log-normal, median `latency`, this sigma (long tail)
    "latency_seed": 0,  # the log-normal draws repeat for the same seed and settings
    "faults": [],  # queue of [kind, count]
    "fail_matching": {},  # prompt substring -> fault kind, every time
    "bad_keys": ["bad-key"],  # API keys answered with 401
    "max_concurrent": None,  # 429 above this many requests in flight
    "retry_after": None,  # Retry-After header on 429s (seconds, as text)
    "hang_s": 30.0,  # how long a "hang" fault holds the request
    "reply_sentences": 4,  # length of each reply
    "ratelimit_headers": {},  # extra headers on every reply (x-ratelimit-remaining-requests, ...)
    "echo_prompt": False,  # start each reply with the first line of the user prompt
    "near_duplicates": False,  # replies depend on the prompt only, plus a last word that varies per request
    **BATCH_DEFAULTS,  # the batch endpoints' behaviour (tests/fake_llm/batches.py)
}
ENDINGS = ["Thanks.", "Well done.", "Good work.", "Nice job.", "Great effort.", "Fine work.", "Bravo."]
WORDS = {
    "who": ["The nurse", "An engineer", "The new manager", "A retired teacher", "The apprentice", "A pilot",
            "The accountant", "A young chef", "The librarian", "A carpenter", "The surgeon", "A student"],
    "did": ["fixed", "designed", "organised", "rebuilt", "explained", "measured", "planned", "tested",
            "repaired", "documented", "improved", "delivered"],
    "what": ["the old heating system", "a schedule for the night shift", "the budget for spring",
             "a bridge over the river", "the clinic's records", "a garden on the roof", "the training plan",
             "a safer ladder", "the delivery routes", "the broken pump", "a reading club", "the wiring"],
    "how": ["with patience and care", "after weeks of practice", "by asking good questions",
            "in one long afternoon", "together with two colleagues", "using a careful checklist",
            "before anyone else noticed", "while teaching others", "with borrowed tools", "from first principles"],
}


def reply_text(seed: str, sentences: int) -> str:
    """Plain, varied English so quality filters (length, repetition, language) accept it.

    No phrase is drawn twice in one reply while there are enough to go round: drawn with replacement,
    1 reply in 1,700 repeated enough to be refused as repetition, a retry no test had asked for.
    """
    rng = random.Random(seed)
    drawn = {part: rng.sample(words, sentences) if sentences <= len(words) else rng.choices(words, k=sentences)
             for part, words in WORDS.items()}
    return " ".join(f"{drawn['who'][i]} {drawn['did'][i]} {drawn['what'][i]} {drawn['how'][i]}."
                    for i in range(sentences))


class FakeLLM:
    """Behaviour settings and request counters, shared by every request."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.settings = json.loads(json.dumps(DEFAULTS))
        self.counters = {"requests": 0, "ok": 0, "in_flight": 0, "max_in_flight": 0, "requests_by_key": {}}
        self.counters.update({f"fault_{kind}": 0 for kind in FAULT_KINDS})
        self.log: list[dict] = []  # one entry per request: time, status, fault
        self.batch_store = BatchStore()  # files, batches and their counters
        self.latency_rng = random.Random(self.settings["latency_seed"])

    def set(self, **settings) -> None:
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown fake LLM setting(s): {sorted(unknown)}")
        self.settings.update(settings)
        self.settings["faults"] = [list(item) for item in self.settings["faults"]]
        self.settings["batch_faults"] = [list(item) for item in self.settings["batch_faults"]]
        self.latency_rng = random.Random(self.settings["latency_seed"])

    def reply_latency(self) -> float:
        median, sigma = self.settings["latency"], self.settings["latency_sigma"]
        if sigma <= 0 or median <= 0:
            return median
        return self.latency_rng.lognormvariate(math.log(median), sigma)

    def next_fault(self, prompt: str, api_key: str) -> str | None:
        if api_key in self.settings["bad_keys"]:
            return "401"
        for substring, kind in self.settings["fail_matching"].items():
            if substring in prompt:
                return kind
        limit = self.settings["max_concurrent"]
        if limit is not None and self.counters["in_flight"] > limit:
            return "429"
        return pop_fault(self.settings["faults"])


def pop_fault(queue: list) -> str | None:
    """The next fault of a queue of [kind, count] (counting it down), None once it is empty."""
    while queue and queue[0][1] <= 0:
        queue.pop(0)
    if queue:
        queue[0][1] -= 1
        return queue[0][0]
    return None


def _api_key(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()


def _completion(body: dict, text: str | None, choices: bool = True) -> dict:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    completion_tokens = max(1, len(text or "") // 4)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake-model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
        if choices else [],
        "usage": {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": completion_tokens,
                  "total_tokens": max(1, prompt_chars // 4) + completion_tokens},
    }


async def _chat(request: web.Request) -> web.StreamResponse:
    state: FakeLLM = request.app[STATE]
    counters = state.counters
    counters["requests"] += 1
    key = _api_key(request)
    counters["requests_by_key"][key] = counters["requests_by_key"].get(key, 0) + 1
    counters["in_flight"] += 1
    counters["max_in_flight"] = max(counters["max_in_flight"], counters["in_flight"])
    try:
        body = await request.json()
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        fault = state.next_fault(prompt, key)
        if len(state.log) < 10000:
            state.log.append({"t": time.time(), "fault": fault})
        if fault:
            counters[f"fault_{fault}"] += 1
        return await _answer(state, request, body, prompt, fault)
    finally:
        counters["in_flight"] -= 1


async def _answer(state: FakeLLM, request: web.Request, body: dict, prompt: str, fault: str | None) -> web.StreamResponse:
    settings = state.settings
    if fault == "401":
        return web.json_response({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                            "code": "invalid_api_key"}}, status=401)
    if fault == "429":
        headers = {"Retry-After": str(settings["retry_after"])} if settings["retry_after"] is not None else {}
        return web.json_response({"error": {"message": "Rate limit reached.", "type": "rate_limit_error"}},
                                 status=429, headers=headers)
    if fault == "500":
        return web.json_response({"error": {"message": "The server had an error.", "type": "server_error"}}, status=500)
    if fault == "disconnect":  # the connection drops with no answer (a crashed proxy or server)
        request.transport.abort()
        raise asyncio.CancelledError
    if fault == "hang":
        await asyncio.sleep(settings["hang_s"])
    elif (latency := state.reply_latency()) > 0:
        await asyncio.sleep(latency)
    if fault == "html":
        return web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
    state.counters["ok"] += 1
    seed = hashlib.sha256(f"{prompt}\x00{state.counters['requests']}".encode()).hexdigest()
    if settings["near_duplicates"]:  # repeats of a prompt: the same text but its last words
        seed = hashlib.sha256(prompt.encode()).hexdigest()
    text = "" if fault == "empty_text" else reply_text(seed, settings["reply_sentences"])
    if text and settings["near_duplicates"]:
        text += " " + ENDINGS[state.counters["requests"] % len(ENDINGS)]
    if text and settings["echo_prompt"]:
        user = [m for m in body.get("messages", []) if m.get("role") == "user"]
        text = ((str(user[-1].get("content", "")).splitlines() or [""])[0] + " " if user else "") + text
    return web.json_response(_completion(body, text, choices=fault != "empty"), headers=settings["ratelimit_headers"])


async def _control(request: web.Request) -> web.Response:
    state: FakeLLM = request.app[STATE]
    body = await request.json()
    if body.pop("reset", False):
        state.reset()
    try:
        state.set(**body)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(state.settings)


async def _stats(request: web.Request) -> web.Response:
    state: FakeLLM = request.app[STATE]
    return web.json_response({**state.counters, **batch_stats(state.batch_store),
                              "log": state.log if request.query.get("log") else None})


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})


def make_app(state: FakeLLM | None = None) -> web.Application:
    app = web.Application(client_max_size=512 * 1024 * 1024)  # batch input files run to 200 MB
    app[STATE] = state or FakeLLM()
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/chat/completions", _chat)
    app.router.add_get("/v1/models", _models)
    add_routes(app)
    app.router.add_post("/control", _control)
    app.router.add_get("/stats", _stats)
    return app
