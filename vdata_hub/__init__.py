"""vdata-hub: generate, share and verify low-bias synthetic training data on the Hugging Face Hub.

The library is the API; the CLI (`python -m vdata_hub`, `vdata`) is a thin layer on top of it.
Heavy dependencies (LiteLLM, torch, transformers, duckdb) are imported only where they are used.
"""

__version__ = "0.1.0"

DEFAULT_REPO = "org/vdata"

__all__ = ["__version__", "DEFAULT_REPO"]
