"""Generation: spec -> planned prompts -> LLM calls (LiteLLM or the embedded model) -> records ->
an Arrow dataset on disk, resumable through a journal.

Modules in the order of the work: spec, prompts, cost (estimates before any call), llm (limits,
retries and what each failure means), llm_call (one LiteLLM request, as plain data), llm_workers
(the worker processes that send them) and local_model (the embedded model's server), quality and
augment (each reply), records (the row schema), journal (what is done, on disk), generate (the
run); batch and batch_providers (the same run through the providers' batch APIs).
"""
