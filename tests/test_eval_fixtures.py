"""Fixtures for the eval tests: a tiny random GPT-2 with the real GPT-2 tokenizer, subsets of
StereoSet's dev file and of CrowS-Pairs (tests/data, with their licenses in its README) and a small
vdata-like Arrow folder. Imported by conftest.py; holds no tests."""

import json
import shutil
from pathlib import Path

import pytest

TEST_DATA = Path(__file__).resolve().parent / "data"
TOKENIZER_DIR = TEST_DATA / "gpt2-tokenizer"
STEREOSET_DEV = TEST_DATA / "stereoset" / "dev-subset.json"
CROWS_PAIRS_CSV = TEST_DATA / "crows-pairs" / "crows_pairs_subset.csv"


@pytest.fixture(scope="session")
def stereoset_dev() -> Path:
    """The first 100 examples of each StereoSet task (and 6 religion ones), original layout."""
    return STEREOSET_DEV


@pytest.fixture(scope="session")
def crows_pairs_csv() -> Path:
    """The first 150 CrowS-Pairs pairs, the public CSV's layout."""
    return CROWS_PAIRS_CSV


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir(tmp_path_factory) -> Path:
    """The real GPT-2 tokenizer as a transformers folder (vocab, merges and a tokenizer config)."""
    folder = tmp_path_factory.mktemp("gpt2-tokenizer")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(TOKENIZER_DIR / name, folder / name)
    special = "<|endoftext|>"
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "bos_token": special, "eos_token": special, "unk_token": special}))
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(gpt2_tokenizer_dir, tmp_path_factory) -> Path:
    """A random 2-layer GPT2LMHeadModel (n_embd 32) saved with the GPT-2 tokenizer: the GPT-2
    code path, offline, in seconds."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        initializer_range=0.2, bos_token_id=50256, eos_token_id=50256)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_dataset_folder(folder: Path, texts: list[str], bias_axis: str = "gender") -> Path:
    """A dataset folder as `generate` writes it (Arrow, the record schema) holding `texts`."""
    import datasets

    from vdata_hub.generation.records import records_to_table

    rows = [{"id": f"r{n}", "text": text, "prompt": "p", "system_prompt": "", "template": "t", "template_sha": "0",
             "variables": "{}", "bias_axis": bias_axis, "domain": "healthcare", "task": "story", "group": "",
             "model": "test", "params": "{}", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.0,
             "finish_reason": "stop", "created_at": "2026-01-01T00:00:00Z"} for n, text in enumerate(texts)]
    datasets.Dataset(records_to_table(rows)).save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="session")
def vdata_folder(tmp_path_factory) -> Path:
    """A small dataset folder as `generate` writes it."""
    texts = [f"Nurse {name} checked the chart of patient {n} and explained the dose to the family."
             for n, name in enumerate(["Amal", "Bo", "Chen", "Dario", "Eun", "Femi", "Gita", "Hugo"] * 3)]
    return write_dataset_folder(tmp_path_factory.mktemp("vdata-out") / "out", texts)
