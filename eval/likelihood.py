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

import weakref

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


def token_logprobs(model, sequences: list[list[int]], first_scored: list[int], batch_size: int = 32,
                   device: str = "cpu", progress=None) -> list[list[float]]:
    """Log-probability of each token of sequences[i] from position first_scored[i] on (>= 1),
    each predicted from the tokens before it; results come back in input order.

    The same as a causal pass over each whole sequence, with less arithmetic: a sequence's last
    token is never fed in (no score needs what it predicts); the sequences of a batch are merged
    into a prefix tree, so tokens that several of them begin with are computed once; the tree is
    one packed row without padding, each token attending only to its own ancestors; the vocabulary
    projection and its log-sum-exp run only on positions that predict a scored token, with all
    those positions at once against a slice of the vocabulary at a time.
    With batch_size 1 every sequence is one plain pass of its own (the reference)."""
    import torch

    parts, packing_is_exact = _checked_parts(model, device)
    if not packing_is_exact:
        batch_size = 1  # the model ignores a custom attention mask: plain passes stay exact
    results: list[list[float]] = [[] for _ in sequences]
    for members in _batches(sequences, batch_size):
        with torch.inference_mode():
            _score_batch(parts, members, sequences, first_scored, device, results)
        if progress is not None:
            progress.update(len(members))
    return results


def _batches(sequences: list[list[int]], batch_size: int) -> list[list[int]]:
    """Indices of the sequences cut into batches of at most batch_size in sorted order (neighbours
    share the longest prefixes): as few batches as possible and, among such cuts, the ones that
    separate the fewest shared prefix tokens (a prefix tree of sorted sequences has
    sum(lengths) - sum(common prefix of neighbours) nodes)."""
    limit = max(1, int(batch_size))
    order = sorted(range(len(sequences)), key=lambda i: sequences[i])
    n = len(order)
    lost_at = [0] + [_common_length(sequences[order[k - 1]], sequences[order[k]]) for k in range(1, n)] + [0]
    best, cut = [(0, 0)] + [None] * n, [0] * (n + 1)  # best[end]: (batches, prefix tokens cut) for order[:end]
    for end in range(1, n + 1):
        for begin in range(max(0, end - limit), end):
            cost = (best[begin][0] + 1, best[begin][1] + lost_at[begin])
            if best[end] is None or cost < best[end]:
                best[end], cut[end] = cost, begin
    batches, end = [], n
    while end > 0:
        batches.append(order[cut[end]:end])
        end = cut[end]
    return batches[::-1]


def _common_length(a: list[int], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


_CHECKED = weakref.WeakKeyDictionary()  # model -> (device, parts, packing is exact)


def _checked_parts(model, device):
    """_model_parts and _packing_is_exact for this model, worked out once per model and device
    (each is a few forward passes, which on a CPU cost as much as scoring a dozen sentences)."""
    checked = _CHECKED.get(model)
    if checked is None or checked[0] != device:
        parts = _model_parts(model)
        checked = _CHECKED[model] = (device, parts, _packing_is_exact(parts, device))
    return checked[1:]


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

    probe = [[0, 1, 2, 3], [0, 1, 4, 5]]  # 5 is predicted from 4, which must not see 2
    packed, plain = [[], []], [[], []]
    with torch.inference_mode():
        _score_batch(parts, [0, 1], probe, [1, 1], device, packed)
        for i in (0, 1):
            _score_batch(parts, [i], probe, [1, 1], device, plain)
    return all(abs(a - b) <= 1e-4 for x, y in zip(packed, plain) for a, b in zip(x, y))


def _pack(members, sequences):
    """One row holding the prefix tree of the members' sequences without their last tokens: token
    ids, position ids (each sequence's own), for every token the index of the packed token before
    it in its sequence (-1 for a first token), and (sequence, position) -> packed index."""
    ids, positions, previous, index_of, node_of = [], [], [], {}, {}
    for i in members:
        at = -1
        for position, token in enumerate(sequences[i][:-1]):
            if (at, token) not in node_of:
                node_of[(at, token)] = len(ids)
                ids.append(token)
                positions.append(position)
                previous.append(at)
            at = index_of[(i, position)] = node_of[(at, token)]
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


def _score_batch(parts, members, sequences, first_scored, device, results):
    """One batch in one pass over one packed row without padding (see _pack), then the
    log-probabilities of the scored tokens from the features at the positions before them."""
    import torch

    body, head = parts
    ids, positions, previous, index_of = _pack(members, sequences)
    rows, targets = [], []
    for i in members:
        sequence = sequences[i]
        for position in range(first_scored[i] - 1, len(sequence) - 1):
            rows.append(index_of[(i, position)])
            targets.append(sequence[position + 1])
    if not rows:  # single-token sentences: nothing predicted from inside them (results stay [])
        return
    kwargs = {}
    if len(members) > 1:
        dtype = next(body.parameters()).dtype
        kwargs = {"attention_mask": _attention_mask(previous, dtype).to(device),
                  "position_ids": torch.tensor([positions], device=device)}
    features = body(input_ids=torch.tensor([ids], device=device), **kwargs)[0][0]
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


def _target_logprobs(head, features, rows, targets, vocabulary_slice: int = 4096):
    """log p(targets[k] | features[rows[k]]) in fp32. With `head`, the vocabulary projection of
    all rows at once against `vocabulary_slice` entries at a time, log-sum-exps combined across
    slices: matrix products with many rows run several times faster per row on a CPU than a few
    rows against the whole vocabulary, and the logits held at once stay a few MB (in cache).
    Without it, `features` are the whole logits."""
    import torch

    if head is None:
        logits = features.float()
        return (logits[rows, targets] - torch.logsumexp(logits, dim=-1)[rows]).cpu()
    normaliser = torch.full((len(features),), float("-inf"), device=features.device)
    target_logits = torch.empty(len(rows), dtype=torch.float32, device=features.device)
    for start in range(0, head.out_features, vocabulary_slice):
        stop = start + vocabulary_slice
        bias = None if head.bias is None else head.bias[start:stop]
        logits = torch.nn.functional.linear(features, head.weight[start:stop], bias).float()
        normaliser = torch.logaddexp(normaliser, torch.logsumexp(logits, dim=-1))
        inside = ((targets >= start) & (targets < stop)).nonzero().squeeze(1)
        target_logits[inside] = logits[rows[inside], targets[inside] - start]
    return (target_logits - normaliser[rows]).cpu()


def first_token_logprobs(model, start_id: int, device: str = "cpu"):
    """Log-probabilities of every vocabulary token after the start token alone (one pass)."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[start_id]], device=device)).logits[0, -1].float()
        return torch.log_softmax(logits, dim=-1).cpu()


def intrasentence_logprobs(model, tokenizer, sentences: list[str], batch_size: int = 32, device: str = "cpu",
                           progress=None) -> list[list[float]]:
    """Per-token log-probabilities under the official intrasentence rule (see module doc)."""
    first = first_token_logprobs(model, start_token_id(tokenizer), device)
    sequences = [encode(tokenizer, s) for s in sentences]
    rest = token_logprobs(model, sequences, [1] * len(sequences), batch_size, device, progress)
    return [[float(first[seq[0]])] + tail for seq, tail in zip(sequences, rest)]


def intersentence_logprobs(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 32,
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
