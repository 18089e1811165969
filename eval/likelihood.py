"""Sentence log-probabilities from a causal LM, batched (right padding + attention mask, fp32
log-softmax) and, for comparison, one sentence at a time exactly as StereoSet's official
eval_generative_models.py does it.

Intrasentence (official rule): each candidate sentence is scored as written; its first token's
log-probability comes from the model's distribution after the begin/end-of-text token alone, every
later token's from a pass over the sentence without that token in front; the score is the mean
log-probability over all the sentence's tokens. Intersentence: the official GPT-2 numbers used a
classifier head that was never published, so here a candidate is scored by the mean
log-probability of its tokens conditioned on the begin/end-of-text token and the context.
"""

from __future__ import annotations

from vdata_hub.errors import EvalError

INTERSENTENCE_METHOD = ("intersentence scored by the mean log-probability of the candidate's tokens "
                        "conditioned on the context (the official GPT-2 numbers used an unpublished "
                        "classifier head)")


def start_token_id(tokenizer) -> int:
    """The begin/end-of-text token (GPT-2's <|endoftext|>, which the official scorer uses as
    `unk_token`; SmolLM2 has the same token), else the tokenizer's bos or eos token."""
    vocab = tokenizer.get_vocab()
    if "<|endoftext|>" in vocab:
        return vocab["<|endoftext|>"]
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise EvalError("the tokenizer has no begin/end-of-text token to condition the first token on")


def encode(tokenizer, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise EvalError(f"sentence {text!r} has no tokens")
    return list(ids)


def token_logprobs(model, sequences: list[list[int]], first_scored: list[int], batch_size: int = 16,
                   device: str = "cpu", progress=None) -> list[list[float]]:
    """Log-probability of each token of sequences[i] from position first_scored[i] on (>= 1),
    each predicted from the tokens before it. Sequences are sorted by length into right-padded
    batches with an attention mask; results come back in input order."""
    import inspect

    import torch

    # Only positions that predict scored tokens need the vocabulary projection (the context of an
    # intersentence pair does not): models that take `logits_to_keep` skip the rest.
    keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    results: list[list[float]] = [[] for _ in sequences]
    for start in range(0, len(order), max(1, int(batch_size))):
        rows = order[start:start + max(1, int(batch_size))]
        width = max(len(sequences[i]) for i in rows)
        input_ids = torch.zeros((len(rows), width), dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, i in enumerate(rows):
            input_ids[row, :len(sequences[i])] = torch.tensor(sequences[i])
            attention_mask[row, :len(sequences[i])] = 1
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        offset = min(first_scored[i] for i in rows) - 1 if keeps_logits else 0  # first position kept
        extra = {"logits_to_keep": width - offset} if keeps_logits else {}
        with torch.inference_mode():
            logits = model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits[:, :-1].float()
            targets = input_ids[:, offset + 1:].unsqueeze(-1)
            logprobs = (logits.gather(-1, targets).squeeze(-1) - torch.logsumexp(logits, dim=-1)).cpu()
        for row, i in enumerate(rows):
            results[i] = logprobs[row, first_scored[i] - offset - 1:len(sequences[i]) - offset - 1].tolist()
        if progress is not None:
            progress.update(len(rows))
    return results


def first_token_logprobs(model, start_id: int, device: str = "cpu"):
    """Log-probabilities of every vocabulary token after the start token alone (one pass)."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[start_id]], device=device)).logits[0, -1].float()
        return torch.log_softmax(logits, dim=-1).cpu()


def intrasentence_logprobs(model, tokenizer, sentences: list[str], batch_size: int = 16, device: str = "cpu",
                           progress=None) -> list[list[float]]:
    """Per-token log-probabilities under the official intrasentence rule (see module doc)."""
    first = first_token_logprobs(model, start_token_id(tokenizer), device)
    sequences = [encode(tokenizer, s) for s in sentences]
    rest = token_logprobs(model, sequences, [1] * len(sequences), batch_size, device, progress)
    return [[float(first[seq[0]])] + tail for seq, tail in zip(sequences, rest)]


def intersentence_logprobs(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 16,
                           device: str = "cpu", progress=None) -> list[list[float]]:
    """Per-token log-probabilities of each candidate after `<start> context`; pairs are
    (context, sentence)."""
    start = start_token_id(tokenizer)
    sequences, first_scored = [], []
    for context, sentence in pairs:
        prefix = [start] + encode(tokenizer, context)
        sequences.append(prefix + encode(tokenizer, " " + sentence))
        first_scored.append(len(prefix))
    return token_logprobs(model, sequences, first_scored, batch_size, device, progress)


def official_intrasentence_scores(model, tokenizer, sentences: list[str], device: str = "cpu",
                                  progress=None) -> list[float]:
    """StereoSet's eval_generative_models.py procedure, one sentence per forward pass: softmax
    probabilities read token by token, score = 2 ** mean(log2 p). Kept as the reference that the
    batched path must match (score == exp(mean log-probability))."""
    import numpy as np
    import torch

    with torch.inference_mode():
        start = torch.tensor([[start_token_id(tokenizer)]], device=device)
        initial = torch.softmax(model(input_ids=start).logits.float(), dim=-1)
        scores = []
        for sentence in sentences:
            tokens = encode(tokenizer, sentence)
            joint = [initial[0, 0, tokens[0]].item()]
            output = torch.softmax(model(input_ids=torch.tensor([tokens], device=device)).logits.float(), dim=-1)
            for idx in range(1, len(tokens)):
                joint.append(output[0, idx - 1, tokens[idx]].item())
            score = np.sum([np.log2(p) for p in joint]) / len(joint)
            scores.append(float(np.power(2, score)))
            if progress is not None:
                progress.update(1)
    return scores
