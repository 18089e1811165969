"""Sentence log-probabilities from a causal LM, batched (shared prefixes computed once, batches
packed without padding, fp32 log-sum-exp at scored positions only) and, for comparison, one
sentence at a time exactly as StereoSet's official eval_generative_models.py does it.

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
    each predicted from the tokens before it; results come back in input order.

    The same as a causal pass over each whole sequence, with less arithmetic: sequences that begin
    with the same tokens (an intersentence context, an intrasentence sentence up to its blank)
    share one copy of that prefix; a batch is packed into one row without padding, each token
    attending only to its own sequence; the vocabulary projection and its log-sum-exp run only on
    positions that predict a scored token, once per distinct position, a chunk of rows at a time.
    With batch_size 1 every sequence is one plain pass of its own (the reference)."""
    import torch

    parts = _model_parts(model)
    if batch_size > 1 and not _packing_is_exact(parts, device):
        batch_size = 1  # the model ignores a custom attention mask: plain passes stay exact
    results: list[list[float]] = [[] for _ in sequences]
    for groups in _batches(shared_prefix_groups(sequences, batch_size), batch_size):
        with torch.inference_mode():
            _score_batch(parts, groups, sequences, first_scored, device, results)
        if progress is not None:
            progress.update(sum(len(members) for members, _ in groups))
    return results


def shared_prefix_groups(sequences: list[list[int]], max_members: int) -> list[tuple[list[int], int]]:
    """(members, prefix length) groups of sequences whose first `prefix length` tokens are the
    same, chosen to save the most token positions: in sorted order, the split into runs of at most
    `max_members` that maximises sum((size - 1) * prefix). Every member keeps at least one token
    after the prefix; a sequence alone has prefix 0."""
    order = sorted(range(len(sequences)), key=lambda i: sequences[i])
    n = len(order)
    # shared[k]: tokens that sequence order[k] shares with order[k + 1] (keeping one of each to run)
    shared = [min(_common_length(sequences[order[k]], sequences[order[k + 1]]),
                  len(sequences[order[k]]) - 1, len(sequences[order[k + 1]]) - 1) for k in range(n - 1)]
    best, split = [0] * (n + 1), [0] * (n + 1)
    for end in range(1, n + 1):
        best[end], split[end] = best[end - 1], end - 1
        prefix = None
        for begin in range(end - 2, max(-1, end - 1 - max(1, max_members)), -1):
            prefix = shared[begin] if prefix is None else min(prefix, shared[begin])
            if prefix == 0:
                break
            saved = best[begin] + (end - begin - 1) * prefix
            if saved > best[end]:
                best[end], split[end] = saved, begin
    groups = []
    end = n
    while end > 0:
        begin = split[end]
        members = order[begin:end]
        prefix = min(shared[begin:end - 1]) if len(members) > 1 else 0
        groups.append((members, prefix))
        end = begin
    return groups[::-1]


def _common_length(a: list[int], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def _batches(groups, batch_size: int):
    """Consecutive groups (similar sequences, being in sorted order), at most batch_size
    sequences a batch."""
    limit = max(1, int(batch_size))
    batch, size = [], 0
    for group in groups:
        if batch and size + len(group[0]) > limit:
            yield batch
            batch, size = [], 0
        batch.append(group)
        size += len(group[0])
    if batch:
        yield batch


def _model_parts(model):
    """(body, head) when logits == head(body(...)[0]), which holds for transformers' causal LMs
    without logit scaling or soft-capping; otherwise (model, None): whole logits are the features."""
    import torch

    body, head = getattr(model, "base_model", None), model.get_output_embeddings()
    if body is None or body is model or not isinstance(head, torch.nn.Linear):
        return model, None
    probe = torch.tensor([[0, 1, 2]], device=head.weight.device)
    with torch.inference_mode():
        same = torch.allclose(head(body(input_ids=probe)[0]).float(), model(input_ids=probe).logits.float(),
                              rtol=1e-4, atol=1e-5)
    return (body, head) if same else (model, None)


def _packing_is_exact(parts, device) -> bool:
    """Whether the model honours the packed row's attention mask and position ids (transformers'
    causal LMs do; an architecture that ignored them would mix sequences): two sequences sharing a
    prefix, scored packed and one plain pass each."""
    import torch

    probe = [[0, 1, 2, 3], [0, 1, 4, 5]]  # 5 is predicted from 4, which must not see 2 and 3
    packed, plain = [[], []], [[], []]
    with torch.inference_mode():
        _score_batch(parts, [([0, 1], 2)], probe, [1, 1], device, packed)
        for i in (0, 1):
            _score_batch(parts, [([i], 0)], probe, [1, 1], device, plain)
    return all(abs(a - b) <= 1e-4 for x, y in zip(packed, plain) for a, b in zip(x, y))


def _pack(groups, sequences):
    """One row holding each group's shared prefix once, then each member's continuation:
    token ids, position ids (each sequence's own), for every token the index of the packed token
    before it in its sequence (-1 for a first token), and (sequence, position) -> packed index."""
    ids, positions, previous, index_of = [], [], [], {}

    def add(token: int, position: int, before: int) -> int:
        ids.append(token)
        positions.append(position)
        previous.append(before)
        return len(ids) - 1

    for members, prefix in groups:
        before = -1
        for position in range(prefix):
            before = add(sequences[members[0]][position], position, before)
            index_of.update({(i, position): before for i in members})
        for i in members:
            at = before
            for position in range(prefix, len(sequences[i])):
                at = index_of[(i, position)] = add(sequences[i][position], position, at)
    return ids, positions, previous, index_of


def _attention_mask(previous: list[int], dtype):
    """Additive (1, 1, T, T) mask: a token sees itself and, following `previous`, the tokens of its
    own sequence before it (a shared prefix is part of every member's sequence)."""
    import torch

    size = len(previous)
    allowed = torch.eye(size, dtype=torch.bool)
    for index, before in enumerate(previous):
        if before >= 0:
            allowed[index] |= allowed[before]
    mask = torch.zeros((size, size), dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def _score_batch(parts, groups, sequences, first_scored, device, results):
    """One batch in one pass over one packed row without padding (see _pack), then the
    log-probabilities of the scored tokens from the features at the positions before them."""
    import torch

    body, head = parts
    ids, positions, previous, index_of = _pack(groups, sequences)
    members = [i for group, _ in groups for i in group]
    kwargs = {}
    if len(members) > 1:
        dtype = next(body.parameters()).dtype
        kwargs = {"attention_mask": _attention_mask(previous, dtype).to(device),
                  "position_ids": torch.tensor([positions], device=device)}
    features = body(input_ids=torch.tensor([ids], device=device), **kwargs)[0][0]
    rows, targets = [], []
    for i in members:
        sequence = sequences[i]
        for position in range(first_scored[i] - 1, len(sequence) - 1):
            rows.append(index_of[(i, position)])
            targets.append(sequence[position + 1])
    used = sorted(set(rows))  # a shared prefix position is projected once
    row_of = {index: k for k, index in enumerate(used)}

    def index(values):
        return torch.tensor(values, dtype=torch.long, device=device)

    logprobs = _target_logprobs(head, features[index(used)], index([row_of[r] for r in rows]),
                                index(targets)).tolist()
    start = 0
    for i in members:
        count = len(sequences[i]) - first_scored[i]
        results[i] = logprobs[start:start + count]
        start += count


def _target_logprobs(head, features, rows, targets, chunk_elements: int = 1 << 21):
    """log p(targets[k] | features[rows[k]]): vocabulary projection (when `head` is given) and
    log-sum-exp in fp32, a chunk of rows at a time so that at most ~chunk_elements logits
    exist at once (8 MB: they stay in cache, and the allocator reuses the memory instead of
    mapping fresh pages)."""
    import torch

    vocabulary = head.out_features if head is not None else features.shape[-1]
    chunk = max(1, chunk_elements // vocabulary)
    logprobs = torch.empty(len(rows), dtype=torch.float32, device=features.device)
    for start in range(0, len(features), chunk):
        logits = features[start:start + chunk]
        logits = (head(logits) if head is not None else logits).float()
        picked = ((rows >= start) & (rows < start + chunk)).nonzero().squeeze(1)
        local = rows[picked] - start
        logprobs[picked] = logits[local, targets[picked]] - torch.logsumexp(logits, dim=-1)[local]
    return logprobs.cpu()


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
