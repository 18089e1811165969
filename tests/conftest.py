"""Shared test set-up: offline, no telemetry, and the project's own local servers.

Environment variables that the Hub and LiteLLM clients read at import time are set here, before
any test module imports them.
"""

import atexit
import os
import shutil
import signal
import socket
import tempfile

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["VDATA_CONFIG"] = os.path.join(tempfile.mkdtemp(prefix="vdata-config-"), "config.yaml")
for secret in ("HF_TOKEN", "APIKEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
    os.environ.pop(secret, None)

# A suite started in the background by a non-interactive shell (`./.ci/run &`, nohup) inherits SIGINT
# ignored, and so would every CLI it starts: the tests that stop a run with Ctrl-C would see it
# ignored, as such a shell means. They test the tool, not the shell, so the suite starts them with it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Hub emulator: huggingface_hub and datasets read these at import, so they are set before any import of them.
_hf_home = tempfile.mkdtemp(prefix="vdata-hf-home-")
atexit.register(shutil.rmtree, _hf_home, ignore_errors=True)
os.environ["HF_HOME"] = _hf_home
os.environ["HF_DATASETS_CACHE"] = os.path.join(_hf_home, "datasets")
os.environ.pop("HUGGINGFACE_CO_STAGING", None)
with socket.socket() as _sock:  # a free port for the session's emulator (fixture `hub`)
    _sock.bind(("127.0.0.1", 0))
    os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{_sock.getsockname()[1]}"

# Fixture modules of the local servers (each helper adds its own line):
from tests.fake_llm.fixtures import _fake_llm_server, fake_llm  # noqa: E402,F401
from tests.hub_emulator.fixtures import hub  # noqa: E402,F401
from tests.test_eval_fixtures import crows_pairs_csv, gpt2_tokenizer_dir, stereoset_dev, tiny_gpt2, vdata_folder  # noqa: E402,F401,E501
