"""A fake OpenAI-compatible chat server of our own, for tests and benchmarks.

Real HTTP on 127.0.0.1 with switchable latency (fixed, or log-normal with a long tail) and faults
(429 with Retry-After, 500, hang, HTML garbage, empty choices, empty text, 401 for a bad key, a
dropped connection), set at run time through `POST /control`. It also serves the providers' batch
APIs (OpenAI files + batches, Anthropic Message Batches, Gemini batch jobs; tests/fake_llm/batches.py).
Run it alone with
`python -m tests.fake_llm --port P`.
"""

from tests.fake_llm.server import FakeLLM, make_app

__all__ = ["FakeLLM", "make_app"]
