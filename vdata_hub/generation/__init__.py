"""Generation: spec -> planned prompts -> LLM calls (LiteLLM or the embedded model) -> records ->
an Arrow dataset on disk, resumable through a journal.

Modules in the order of the work: spec, prompts, cost (estimates before any call), llm and
local_model (the calls), quality and augment (each reply), records (the row schema), journal (what
is done, on disk), generate (the run); batch and batch_providers (the same run through the
providers' batch APIs).
"""
