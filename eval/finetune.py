"""`vdata eval finetune`: causal-LM fine-tuning (transformers Trainer) on the `text` column of a
vdata dataset, a Hub repo (optionally one config) or a local Arrow folder written by `generate`.

Texts are split into a held-out part before packing (so no block straddles both), each text
ends with the end-of-text token, and the token stream is cut into `block_size` blocks.
Perplexity on the held-out blocks is measured before and after training. Checkpoints go to
OUTPUT/checkpoints; running the same command again resumes from the last one. The trained model
and tokenizer are saved to OUTPUT/final, loadable by `vdata eval stereoset --model OUTPUT/final`.

Data-parallel: the same command runs under `torchrun --nproc-per-node N -m vdata_hub eval finetune
...` or `accelerate launch -m vdata_hub eval finetune ...`; the Trainer splits each step's batches
across the processes (gloo on CPUs, NCCL on GPUs, one GPU per process), and only the first process
writes the model and finetune.json. A step then holds batch_size x processes blocks.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from vdata_hub.errors import EvalError, VdataError
from vdata_hub.progress import ProgressArg


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
    batch_size: int = 0     # blocks per step and process (0: not recorded, older runs)
    processes: int = 1      # data-parallel processes
    seed: int = 0           # order of the training blocks
    tokens_seen: int = 0    # steps x batch_size x processes x block_size

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
    """A deterministic held-out split of whole texts: at least one text on each side (the same for
    every training seed, so runs with different seeds are measured on the same held-out text)."""
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
             progress: ProgressArg = False, save_steps: int | None = None, seed: int = 0) -> FinetuneResult:
    """Fine-tune `model` on the dataset's texts; returns perplexities before and after. `seed` sets
    the order of the training blocks (the held-out split stays fixed). `progress`: the Trainer's
    bar (see vdata_hub.progress); under a data-parallel launch only the first process shows it."""
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint

    from vdata_hub.eval.models import load_model

    started = time.perf_counter()
    texts, data_revision = load_texts(str(data), config, revision)
    train_texts, eval_texts = split_texts(texts, eval_fraction)
    processes, rank = distributed_processes()
    shown = bool(progress) and rank == 0
    lm = load_model(str(model), process_device(device), progress=shown)
    train_set = _blocks_dataset(lm.tokenizer, train_texts, int(block_size))
    eval_set = _blocks_dataset(lm.tokenizer, eval_texts, int(block_size))
    out = Path(output)
    checkpoints = out / "checkpoints"
    max_steps = int(max_steps)
    args = TrainingArguments(
        output_dir=str(checkpoints), max_steps=max_steps, learning_rate=float(learning_rate),
        per_device_train_batch_size=int(batch_size), per_device_eval_batch_size=int(batch_size),
        save_strategy="steps", save_steps=save_steps or max(1, min(100, max_steps // 2)), save_total_limit=2,
        logging_steps=max(1, max_steps // 10), report_to="none", disable_tqdm=not shown,
        seed=int(seed), use_cpu=lm.device == "cpu", dataloader_pin_memory=False, warmup_steps=0,
        ddp_backend=("gloo" if lm.device == "cpu" else None) if processes > 1 else None)
    trainer = Trainer(model=lm.model, args=args, train_dataset=train_set, eval_dataset=eval_set)
    trainer.remove_callback(PrinterCallback)
    perplexity_before = _perplexity(trainer)
    last = get_last_checkpoint(str(checkpoints)) if resume and checkpoints.is_dir() else None
    train_output = trainer.train(resume_from_checkpoint=last)
    perplexity_after = _perplexity(trainer)
    final_dir = out / "final"
    trainer.save_model(str(final_dir))  # the first process writes, the others wait
    result = FinetuneResult(
        model=str(model), data=str(data), data_revision=data_revision, output=str(out), final_dir=str(final_dir),
        steps=trainer.state.global_step, resumed_from=Path(last).name if last else None,
        train_texts=len(train_texts), eval_texts=len(eval_texts), train_blocks=len(train_set),
        eval_blocks=len(eval_set), block_size=int(block_size), learning_rate=float(learning_rate),
        batch_size=int(batch_size), processes=processes, seed=int(seed),
        tokens_seen=trainer.state.global_step * int(batch_size) * processes * int(block_size), device=lm.device,
        perplexity_before=perplexity_before, perplexity_after=perplexity_after,
        train_loss=train_output.training_loss, seconds=round(time.perf_counter() - started, 2),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if trainer.is_world_process_zero():
        lm.tokenizer.save_pretrained(str(final_dir))
        (out / "finetune.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    return result


def distributed_processes() -> tuple[int, int]:
    """(number of processes, this one's rank) as torchrun and accelerate launch set them."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


def process_device(device: str | None) -> str | None:
    """Under a multi-GPU launch each process takes the GPU of its local rank."""
    from vdata_hub.eval.models import pick_device

    chosen = pick_device(device)
    if chosen == "cuda" and distributed_processes()[0] > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return chosen


def _perplexity(trainer) -> float:
    return math.exp(trainer.evaluate()["eval_loss"])
