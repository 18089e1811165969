"""llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`, same options) with
llama.cpp's extra CPU buffer types turned off.

The extra buffer types repack weights for special CPU kernels. On CPUs that report AMX (Intel
Sapphire Rapids and later), llama.cpp then runs prompts of more than one token through its AMX
kernels, which crash with SIGSEGV on some virtual machines (seen here with llama-cpp-python
0.3.36); a one-token prompt works, so a server would start, answer /models, and die on the first
chat request. SmolLM2's Q4_1 weights gain nothing from repacking on other CPUs, so this costs
nothing there. llama-cpp-python has no option for it, hence the default model parameters are
wrapped before the server loads the model.
"""

import llama_cpp.llama_cpp as llama_cpp_api

_default_model_params = llama_cpp_api.llama_model_default_params


def _model_params_without_extra_buffers():
    params = _default_model_params()
    params.use_extra_bufts = False
    return params


def disable_extra_buffers() -> None:
    """Every llama_cpp.Llama created after this call loads without extra buffer types."""
    llama_cpp_api.llama_model_default_params = _model_params_without_extra_buffers


def main() -> None:
    disable_extra_buffers()
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
