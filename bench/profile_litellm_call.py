"""CPU per `litellm.acompletion` call, as vdata-hub sends it, with each of LiteLLM's switches.

LiteLLM does work on every call that vdata-hub never uses (it prices each reply, builds a logging
payload, looks up model info...). This measures which of its settings, alone and together, cut
that CPU. One process sends batches of --batch requests at concurrency 16 to the fake server at
zero latency, one batch per variant in turn, --rounds times, so the variants share the machine's
load and LiteLLM's warm caches alike; a variant's settings are set before its batch and undone
after. CPU is `time.process_time()` (all threads: LiteLLM runs part of each call in a thread
pool) per batch, divided by its calls; the median over rounds is printed with its change from the
baseline.

    python bench/profile_litellm_call.py [--batch 50] [--rounds 20] [--model openai/fake-model]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

# name -> (LiteLLM module settings, extra acompletion kwargs)
VARIANTS = {
    "baseline (as vdata-hub sends)": ({}, {}),
    "custom pricing kwargs (our price, looked up once)": ({}, {"input_cost_per_token": 1.5e-7,
                                                               "output_cost_per_token": 6e-7}),
    "turn_off_message_logging": ({"turn_off_message_logging": True}, {}),
    "disable_token_counter": ({"disable_token_counter": True}, {}),
    "disable_end_user_cost_tracking": ({"disable_end_user_cost_tracking": True}, {}),
    "custom_llm_provider=openai (provider resolved once)": ({}, {"custom_llm_provider": "openai"}),
    "no-log": ({}, {"no-log": True}),
}


def all_together() -> tuple[dict, dict]:
    settings, kwargs = {}, {}
    for more_settings, more_kwargs in VARIANTS.values():
        settings.update(more_settings)
        kwargs.update(more_kwargs)
    return settings, kwargs


def measure(base_url: str, model: str, batch: int, rounds: int) -> dict[str, list[float]]:
    from vdata_hub.generation.llm_call import CallSettings, LiteLLMCaller

    caller = LiteLLMCaller(CallSettings(model, base_url, "x", 0.8, 0.95, 256, 60))
    litellm, base_kwargs = caller.litellm, dict(caller.kwargs)
    messages = [{"role": "system", "content": "You write short, plain stories."},
                {"role": "user", "content": "Write a short story about a nurse who fixed the old heating system. " * 4}]
    variants = {**VARIANTS, "all of the above": all_together()}
    results = {name: [] for name in variants}

    async def send(count: int) -> None:
        gate = asyncio.Semaphore(16)

        async def one() -> None:
            async with gate:
                reply = await caller.call(messages)
                assert getattr(reply, "text", ""), reply

        await asyncio.gather(*(one() for _ in range(count)))

    async def run_all() -> None:
        await send(100)  # LiteLLM's first-call set-up and connections
        for round_number in range(rounds):
            for name, (settings, kwargs) in variants.items():
                saved = {key: getattr(litellm, key) for key in settings}
                for key, value in settings.items():
                    setattr(litellm, key, value)
                caller.kwargs = {**base_kwargs, **kwargs}
                if kwargs.get("custom_llm_provider"):
                    caller.kwargs["model"] = model.split("/", 1)[1]
                started = time.process_time()
                await send(batch)
                results[name].append(1000 * (time.process_time() - started) / batch)
                for key, value in saved.items():
                    setattr(litellm, key, value)
            print(f"round {round_number + 1}/{rounds}, load {os.getloadavg()[0]:.1f}", flush=True)

    asyncio.run(run_all())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--model", default="openai/fake-model")
    parser.add_argument("--port", type=int, default=18795)
    args = parser.parse_args()
    from bench.bench_generate_throughput import start_server

    server = start_server(args.port, 0.0, 0.0)
    load_before = os.getloadavg()[0]
    try:
        results = measure(f"http://127.0.0.1:{args.port}/v1", args.model, args.batch, args.rounds)
    finally:
        server.terminate()
        server.wait()
    names = list(results)
    baseline = statistics.median(results[names[0]])
    print(f"\nmodel {args.model}, {args.rounds} rounds of {args.batch} calls per variant, load {load_before:.1f} → "
          f"{os.getloadavg()[0]:.1f}; command: python bench/profile_litellm_call.py " + " ".join(sys.argv[1:]))
    print("| variant | CPU ms/call, median | quartiles | vs baseline |")
    print("|---|---|---|---|")
    for name in names:
        values = results[name]
        median = statistics.median(values)
        low, _, high = statistics.quantiles(values, n=4)
        print(f"| {name} | {median:.2f} | {low:.2f}–{high:.2f} | {100 * (median - baseline) / baseline:+.0f}% |")


if __name__ == "__main__":
    main()
