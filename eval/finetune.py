"""`vdata eval finetune`: causal-LM fine-tuning (transformers Trainer) on the `text` column of a
vdata dataset, a Hub repo (optionally one config) or a local Arrow folder written by `generate`.

Texts are split into a held-out part before packing (so no block straddles both), each text
ends with the end-of-text token, and the token stream is cut into `block_size` blocks.
Perplexity on the held-out blocks is measured before and after training. Checkpoints go to
OUTPUT/checkpoints; running the same command again resumes from the last one. The trained model
and tokenizer are saved to OUTPUT/final, loadable by `vdata eval stereoset --model OUTPUT/final`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from vdata_hub.errors import EvalError, VdataError


@dataclass
class FinetuneResult:
    model: str
    data: str
    data_revision: str | None
    output: str
    final_dir: str
    steps: int
    resumed_from: str | None
    train_texts: int
    eval_texts: int
    train_blocks: int
    eval_blocks: int
    block_size: int
    learning_rate: float
    device: str
    perplexity_before: float
    perplexity_after: float
    train_loss: float | None
    seconds: float
    created_at: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, path) -> "FinetuneResult":
        """A finished run read back from its finetune.json."""
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))

    def summary(self) -> str:
        resumed = f" (resumed from {self.resumed_from})" if self.resumed_from else ""
        return (f"Fine-tuned {self.model} on {self.data} @ {self.data_revision}: {self.steps} steps{resumed}, "
                f"{self.train_blocks} train / {self.eval_blocks} held-out blocks of {self.block_size} tokens\n"
                f"Held-out perplexity: {self.perplexity_before:.2f} -> {self.perplexity_after:.2f}\n"
                f"Model saved to {self.final_dir}")


def load_texts(data: str, config: str | None = None, revision: str | None = None) -> tuple[list[str], str]:
    """Non-empty `text` values and the data revision: the Hub commit sha, or for a local Arrow
    folder `local:` plus a hash of the texts."""
    import datasets

    if Path(data).is_dir():
        from vdata_hub.generation.local_dataset import load_local_dataset

        texts = [t for t in load_local_dataset(data).column("text").to_pylist() if t and t.strip()]
        return texts, "local:" + hashlib.sha256("\n\x00".join(texts).encode()).hexdigest()[:12]
    from vdata_hub import hub

    try:
        with hub.errors(data, None, "loading the dataset", revision):  # a Hub that cannot be reached: one line
            sha = hub.dataset_info(hub.api(), data, revision).sha
            loaded = datasets.load_dataset(data, config, revision=sha, split="train")
    except VdataError:
        raise
    except Exception as exc:  # missing repo or config: the user fixes the argument
        raise EvalError(f"cannot load dataset {data!r} (config {config}, revision {revision}): {exc}") from exc
    return _text_column(loaded, data), sha


def _text_column(dataset, data: str) -> list[str]:
    if "text" not in dataset.column_names:
        raise EvalError(f"{data} has no `text` column (columns: {', '.join(dataset.column_names)})")
    return [t for t in dataset["text"] if t and t.strip()]


def split_texts(texts: list[str], eval_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """A deterministic held-out split of whole texts: at least one text on each side."""
    if len(texts) < 2:
        raise EvalError(f"need at least 2 non-empty texts to hold some out; the dataset has {len(texts)}")
    shuffled = texts[:]
    random.Random(seed).shuffle(shuffled)
    n_eval = min(len(texts) - 1, max(1, round(len(texts) * float(eval_fraction))))
    return shuffled[n_eval:], shuffled[:n_eval]


def pack(token_lists: list[list[int]], block_size: int) -> list[list[int]]:
    """Concatenate and cut into full blocks; a stream shorter than one block is one short block."""
    stream = [t for ids in token_lists for t in ids]
    blocks = [stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]
    return blocks or ([stream] if stream else [])


def _blocks_dataset(tokenizer, texts: list[str], block_size: int):
    import datasets

    eos = tokenizer.eos_token_id
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    ids = [list(x) + ([eos] if eos is not None else []) for x in encoded]
    blocks = pack(ids, block_size)
    return datasets.Dataset.from_dict({"input_ids": blocks, "labels": blocks})


def finetune(model: str = "gpt2", data: str = "org/vdata", output: str = "finetuned", config: str | None = None,
             revision: str | None = None, max_steps: int = 200, learning_rate: float = 5e-5, block_size: int = 256,
             batch_size: int = 8, eval_fraction: float = 0.05, resume: bool = True, device: str | None = None,
             quiet: bool = False, save_steps: int | None = None, seed: int = 0) -> FinetuneResult:
    """Fine-tune `model` on the dataset's texts; returns perplexities before and after."""
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint

    from vdata_hub.eval.models import load_model

    started = time.perf_counter()
    texts, data_revision = load_texts(str(data), config, revision)
    train_texts, eval_texts = split_texts(texts, eval_fraction, seed)
    lm = load_model(str(model), device, quiet=bool(quiet))
    train_set = _blocks_dataset(lm.tokenizer, train_texts, int(block_size))
    eval_set = _blocks_dataset(lm.tokenizer, eval_texts, int(block_size))
    out = Path(output)
    checkpoints = out / "checkpoints"
    max_steps = int(max_steps)
    args = TrainingArguments(
        output_dir=str(checkpoints), max_steps=max_steps, learning_rate=float(learning_rate),
        per_device_train_batch_size=int(batch_size), per_device_eval_batch_size=int(batch_size),
        save_strategy="steps", save_steps=save_steps or max(1, min(100, max_steps // 2)), save_total_limit=2,
        logging_steps=max(1, max_steps // 10), report_to="none", disable_tqdm=bool(quiet), seed=seed,
        use_cpu=lm.device == "cpu", dataloader_pin_memory=False, warmup_steps=0)
    trainer = Trainer(model=lm.model, args=args, train_dataset=train_set, eval_dataset=eval_set)
    trainer.remove_callback(PrinterCallback)
    perplexity_before = _perplexity(trainer)
    last = get_last_checkpoint(str(checkpoints)) if resume and checkpoints.is_dir() else None
    train_output = trainer.train(resume_from_checkpoint=last)
    perplexity_after = _perplexity(trainer)
    final_dir = out / "final"
    trainer.save_model(str(final_dir))
    lm.tokenizer.save_pretrained(str(final_dir))
    result = FinetuneResult(
        model=str(model), data=str(data), data_revision=data_revision, output=str(out), final_dir=str(final_dir),
        steps=trainer.state.global_step, resumed_from=Path(last).name if last else None,
        train_texts=len(train_texts), eval_texts=len(eval_texts), train_blocks=len(train_set),
        eval_blocks=len(eval_set), block_size=int(block_size), learning_rate=float(learning_rate), device=lm.device,
        perplexity_before=perplexity_before, perplexity_after=perplexity_after,
        train_loss=train_output.training_loss, seconds=round(time.perf_counter() - started, 2),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    (out / "finetune.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    return result


def _perplexity(trainer) -> float:
    return math.exp(trainer.evaluate()["eval_loss"])
