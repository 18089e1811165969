"""Prices and the budget arithmetic: what a run will cost and produce, before any call is made.

Prices come from LiteLLM's price map (`model_prices_and_context_window_backup.json`, the same
data as `litellm.model_cost` with LITELLM_LOCAL_MODEL_COST_MAP=True). When LiteLLM is not
imported yet the file is read directly, so `vdata estimate` and `generate --dry-run` stay quick
and never import LiteLLM. Local models (`local`, `local:PATH.gguf`) and models missing from the
map cost 0.

The estimate follows the original design's arithmetic, dollars → tokens → bytes:
- input tokens: the rendered system and user prompts, at CHARS_PER_TOKEN characters per token
  plus the chat format's per-message overhead (no tokenizer: providers differ, and loading one
  is slow; on the shipped prompts this is within a few percent of tiktoken's count);
- output tokens: an upper bound, every request writing `sampling.max_tokens`;
- bytes: output tokens × BYTES_PER_TOKEN for the text (measured ~4.8 on English; the original
  design assumed ~6), plus the prompts and metadata that every row of the dataset stores.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from vdata_hub.generation.local_model import is_local

# English text measured 4.7-4.9 characters per token with the SmolLM2, GPT-4 and GPT-4o tokenizers
# (demo stories) and 4.6 on the shipped prompts; 4.5 errs toward more tokens, so more cost.
CHARS_PER_TOKEN = 4.5
BYTES_PER_TOKEN = CHARS_PER_TOKEN  # English text is (nearly) all ASCII: a byte per character
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators per chat message (OpenAI's counting rule)
REPLY_PRIMING_TOKENS = 3  # every reply is primed with <|start|>assistant<|message|>
BATCH_DISCOUNT = 0.5  # batch price / real-time price where LiteLLM's map has no batch price
ROW_METADATA_BYTES = 500  # ids, hashes, variables, params, timestamps per Arrow row (measured ~510)

# Whoever imports LiteLLM after this: use the price map it ships, never a download.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@dataclass(frozen=True)
class Price:
    """Per-token USD prices of one model, and the price-map key they came from (None: unknown)."""

    input_per_token: float = 0.0
    output_per_token: float = 0.0
    key: Optional[str] = None
    batch: bool = False  # the provider's batch-API price
    assumed_discount: bool = False  # batch price taken as BATCH_DISCOUNT of the real-time one


@dataclass(frozen=True)
class Estimate:
    """What a planned run will send, cost and write (output figures are upper bounds)."""

    model: str
    requests: int
    input_tokens: int
    output_tokens: int  # requests × max_tokens: the most the run can generate
    max_tokens: int
    price: Price
    usd: float
    text_bytes: int  # generated text only: output_tokens × BYTES_PER_TOKEN
    output_bytes: int  # the dataset on disk: text plus stored prompts and row metadata
    max_cost_usd: Optional[float] = None
    batch: bool = False  # priced and sent through the provider's batch API


def _price_map() -> dict:
    if "litellm" in sys.modules:  # already paid for: it also holds prices the user registered
        return sys.modules["litellm"].model_cost
    return _price_file()


@lru_cache(maxsize=1)
def _price_file() -> dict:
    import importlib.util

    found = importlib.util.find_spec("litellm")
    if found is None or not found.submodule_search_locations:
        return {}
    for folder in found.submodule_search_locations:
        path = Path(folder) / "model_prices_and_context_window_backup.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return {}


def model_price(model: str, batch: bool = False) -> Price:
    """Per-token prices from LiteLLM's price map: the model as given, then without its provider
    prefix (`openai/gpt-4o-mini` → `gpt-4o-mini`); 0 for local and unknown models.

    With `batch`, the map's batch prices (`input_cost_per_token_batches`, ...) where it has
    them, else BATCH_DISCOUNT of the real-time prices (OpenAI, Anthropic and Google all sell
    batch tokens at half price), marked `assumed_discount`.
    """
    if is_local(model):
        return Price()
    prices = _price_map()
    candidates = [model]
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    for key in candidates:
        entry = prices.get(key)
        if isinstance(entry, dict) and key != "sample_spec" and "output_cost_per_token" in entry:
            price = Price(float(entry.get("input_cost_per_token") or 0.0),
                          float(entry.get("output_cost_per_token") or 0.0), key)
            return _batch_price(price, entry) if batch else price
    return Price(batch=batch)


def _batch_price(price: Price, entry: dict) -> Price:
    if "input_cost_per_token_batches" in entry or "output_cost_per_token_batches" in entry:
        return Price(float(entry.get("input_cost_per_token_batches", price.input_per_token) or 0.0),
                     float(entry.get("output_cost_per_token_batches", price.output_per_token) or 0.0),
                     price.key, batch=True)
    return Price(price.input_per_token * BATCH_DISCOUNT, price.output_per_token * BATCH_DISCOUNT, price.key,
                 batch=True, assumed_discount=True)


def call_cost(model: str, input_tokens: int, output_tokens: int, batch: bool = False) -> float:
    """USD cost of one call (at the batch price with `batch`); 0.0 for local and unknown models."""
    price = model_price(model, batch)
    return input_tokens * price.input_per_token + output_tokens * price.output_per_token


def prompt_tokens(prompt: str, system_prompt: str = "") -> int:
    """Approximate input tokens of one chat request (characters / CHARS_PER_TOKEN + overhead)."""
    messages = [text for text in (system_prompt, prompt) if text]
    chars = sum(len(text) for text in messages)
    return round(chars / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS * len(messages) + REPLY_PRIMING_TOKENS


def estimate_plan(planned_records, spec) -> Estimate:
    """Tokens, USD and bytes of a planned run (PlannedRecords, any iterable, + GenerationSpec)."""
    max_tokens = spec.sampling.max_tokens
    requests = input_tokens = stored_prompt_bytes = 0
    for record in planned_records:  # one pass: a plan can be an iterator of 100k records
        requests += 1
        input_tokens += prompt_tokens(record.prompt, record.system_prompt)
        stored_prompt_bytes += len(record.prompt.encode()) + len(record.system_prompt.encode())
    output_tokens = requests * max_tokens
    batch = bool(getattr(spec, "batch", False))
    price = model_price(spec.model, batch)
    text_bytes = round(output_tokens * BYTES_PER_TOKEN)
    return Estimate(
        model=spec.model,
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        max_tokens=max_tokens,
        price=price,
        usd=input_tokens * price.input_per_token + output_tokens * price.output_per_token,
        text_bytes=text_bytes,
        output_bytes=text_bytes + stored_prompt_bytes + requests * ROW_METADATA_BYTES,
        max_cost_usd=spec.max_cost_usd,
        batch=batch,
    )


def estimate(spec: str = "demo", model: str | None = None, num_records: int | None = None) -> Estimate:
    """Load a spec (file or shipped name), apply overrides, plan its records and estimate them."""
    from vdata_hub.generation.prompts import iter_planned_records
    from vdata_hub.generation.spec import apply_overrides, load_spec

    loaded = apply_overrides(load_spec(spec), model=model, num_records=num_records)
    return estimate_plan(iter_planned_records(loaded), loaded.spec)


def _size(num_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if num_bytes < 1000 or unit == "TB":
            return f"{num_bytes:,.0f} {unit}" if unit == "bytes" else f"{num_bytes:,.1f} {unit}"
        num_bytes /= 1000
    raise AssertionError("unreachable")


def _per_million(per_token: float) -> str:
    return f"${per_token * 1e6:,.2f}/M"


def format_estimate(e: Estimate) -> str:
    """The plan in a few lines: requests, tokens, USD, bytes, and what the cost cap buys."""
    if is_local(e.model):
        price_line = "local model: no charge"
    elif e.price.key is None:
        price_line = "not in LiteLLM's price map: counted as $0 (check your provider's prices)"
    else:
        price_line = (f"{_per_million(e.price.input_per_token)} input, "
                      f"{_per_million(e.price.output_per_token)} output tokens ({e.price.key})")
        if e.price.assumed_discount:
            price_line += f", batch: {BATCH_DISCOUNT:.0%} of the real-time price (LiteLLM has no batch price for it)"
        elif e.price.batch:
            price_line += ", batch price from LiteLLM's price map"
    lines = [
        f"model:           {e.model}",
        f"price:           {price_line}",
        f"requests:        {e.requests:,}",
        f"input tokens:    ~{e.input_tokens:,} (prompts at ~{CHARS_PER_TOKEN:g} characters/token)",
        f"output tokens:   at most {e.output_tokens:,} ({e.requests:,} × max_tokens {e.max_tokens:,})",
        f"cost:            at most ${e.usd:,.4f}",
        f"output size:     at most {_size(e.output_bytes)} "
        f"({_size(e.text_bytes)} of text at ~{BYTES_PER_TOKEN:g} bytes/token, plus prompts and metadata)",
    ]
    if e.price.output_per_token > 0:
        per_dollar = 1 / e.price.output_per_token
        text_size = _size(per_dollar * BYTES_PER_TOKEN)
        lines.append(f"per dollar:      ~{per_dollar:,.0f} output tokens, ~{text_size} of text")
    if e.max_cost_usd is not None:
        lines.append(f"cost cap:        ${e.max_cost_usd:,.2f}{_cap_note(e)}")
    return "\n".join(lines)


def _cap_note(e: Estimate) -> str:
    """The design's arithmetic for the cap: dollars → output tokens → bytes."""
    if e.price.output_per_token <= 0:
        return ""
    tokens = e.max_cost_usd / e.price.output_per_token
    note = f" buys ~{tokens:,.0f} output tokens, ~{_size(tokens * BYTES_PER_TOKEN)} of text"
    if e.usd > e.max_cost_usd and e.requests:
        note += f"; the run may stop at the cap after ~{int(e.requests * e.max_cost_usd / e.usd):,} records"
    return note
