"""Bias evaluation of causal language models: StereoSet with the official scoring rules,
fine-tuning on a vdata dataset, and a before/after report for the dataset card.

Modules, in the order of the work: stereoset_data (examples and predictions files), likelihood
(sentence log-probabilities from a model), scoring (the official SS/LMS/ICAT counts), stereoset
(the `eval stereoset` command and the `evaluate` module), finetune, report, charts, models.
Torch, transformers and datasets are imported inside functions, so importing this package is cheap.
"""
