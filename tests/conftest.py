"""Shared test set-up: offline, no telemetry, and the project's own local servers.

Environment variables that the Hub and LiteLLM clients read at import time are set here, before
any test module imports them.
"""

import os
import tempfile

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["VDATA_CONFIG"] = os.path.join(tempfile.mkdtemp(prefix="vdata-config-"), "config.yaml")
for secret in ("HF_TOKEN", "APIKEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
    os.environ.pop(secret, None)

# Fixture modules of the local servers (each helper adds its own line):
from tests.fake_llm.fixtures import _fake_llm_server, fake_llm  # noqa: E402,F401
