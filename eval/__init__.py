"""Bias evaluation of causal language models: StereoSet and CrowS-Pairs with their published
scoring rules and bootstrap intervals, fine-tuning on a vdata dataset, and a before/after report
(with a control arm and seeds) for the dataset card and its history.

Modules, in the order of the work: stereoset_data and crows_pairs_data (the benchmarks' examples),
likelihood (sentence log-probabilities from a model, batched), scoring (StereoSet's official
SS/LMS/ICAT), bootstrap (intervals over examples, paired differences, the control-arm effect),
stereoset_run and crows_pairs_run (the `eval stereoset` and `eval crows-pairs` commands),
finetune, report, history (the card's evaluation section), charts, models; stereoset/ is the
StereoSet `evaluate` module. Torch, transformers and datasets are imported inside functions, so
importing this package is cheap.
"""
