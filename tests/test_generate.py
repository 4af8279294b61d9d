"""``laart-lab generate``: streams characters from a checkpoint, reproducibly, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from laart_lab.generate import main
from laart_lab.models.charlm import CharLM

VOCAB = "\n !,.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained CharLM saved the way Lightning saves it (no training needed to test sampling)."""
    torch.manual_seed(0)
    model = CharLM(vocabulary=VOCAB, block_size=16, d_model=32, n_layers=1, n_heads=2, lr_decay_steps=10)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(model)
    path = tmp_path_factory.mktemp("gen") / "model.ckpt"
    trainer.save_checkpoint(path, weights_only=True)
    return path


def test_generate_streams_prompt_plus_num_chars(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--ckpt_path", str(checkpoint), "--prompt", "ROMEO:", "--num_chars", "40", "--seed", "1", "--top_k", "5"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 40 + 1  # + final newline
    assert set(first[:-1]) <= set(VOCAB)
    assert main(argv) == 0
    assert capsys.readouterr().out == first  # same seed, same text
    assert main([*argv[:-4], "--seed", "2"]) == 0
    assert capsys.readouterr().out != first


def test_generate_rejects_unknown_characters_and_missing_files(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--ckpt_path", str(checkpoint), "--prompt", "日本"]) == 2
    assert "not in the training vocabulary" in capsys.readouterr().err
    assert main(["--ckpt_path", str(checkpoint.parent / "nope.ckpt")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_greedy_generation_matches_the_parallel_argmax(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--ckpt_path", str(checkpoint), "--prompt", "To be", "--num_chars", "30", "--temperature", "0"]) == 0
    text = capsys.readouterr().out[:-1]
    model = CharLM.from_checkpoint(str(checkpoint))
    ids = [VOCAB.index(c) for c in "To be"]
    with torch.no_grad():
        for _ in range(30):  # softmax restarts its window at block_size=16: mirror it with a sliding context
            context = ids[-16:] if len(ids) <= 16 else ids[-(8 + (len(ids) - 16) % 8) :]
            ids.append(int(model(torch.tensor([context]))[0, -1].argmax()))
    assert text == "".join(VOCAB[i] for i in ids)
