"""A local Hugging Face Hub emulator: a real HTTP server that huggingface_hub, datasets and DuckDB
(through HfFileSystem) talk to with only ``HF_ENDPOINT`` changed. See README.md beside this file."""

from .server import make_server

__all__ = ["make_server"]
