"""``laart-lab generate``: sample text from a ``CharLM`` checkpoint, streaming characters as they come.

    laart-lab generate --ckpt_path runs/charlm/.../last.ckpt --prompt "ROMEO:" \
        --temperature 0.8 --top_k 20 --num_chars 500

The checkpoint is read with ``torch.load(weights_only=True)``: it holds only tensors and plain data.
Generation is incremental: with linear attention each character costs O(1) (the recurrent state);
with softmax the key/value cache grows up to the training block size, then restarts from the last
half of it (``--window``).
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import Sequence

import torch
from jsonargparse import ArgumentParser

from laart_lab.checkpoints import CheckpointError, checkpoint_model_class, read_checkpoint
from laart_lab.data.text import CharTokenizer, TextDataError
from laart_lab.errors import debug_enabled
from laart_lab.models.charlm import CharLM


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="laart-lab generate", description="Sample text from a CharLM checkpoint.")
    parser.add_argument("--ckpt_path", type=str, required=True, help="Lightning checkpoint of a CharLM.")
    parser.add_argument("--prompt", type=str, default="\n", help="Text to continue.")
    parser.add_argument("--num_chars", type=int, default=500, help="How many characters (bytes) to generate.")
    parser.add_argument("--temperature", type=float, default=0.8, help="Softmax temperature; 0 = greedy.")
    parser.add_argument("--top_k", type=int | None, default=None, help="Sample from the k most likely only.")
    parser.add_argument("--seed", type=int | None, default=None, help="Random seed for reproducible samples.")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--window",
        type=int | None,
        default=-1,
        help="Context bound for non-recurrent backends: -1 = training block size, null = unbounded.",
    )
    return parser


def load_charlm(path: str, device: str = "cpu") -> CharLM:
    """The CharLM in checkpoint ``path``, or a :class:`CheckpointError` naming the file and what is wrong."""
    checkpoint = read_checkpoint(path)  # a missing, truncated or foreign file: one clear message
    trained_with = checkpoint_model_class(checkpoint)
    charlm_path = f"{CharLM.__module__}.{CharLM.__qualname__}"
    if trained_with and trained_with != charlm_path:
        raise CheckpointError(
            f"checkpoint {path} is a {trained_with.rsplit('.', 1)[-1]} checkpoint ({trained_with}); `laart-lab "
            "generate` samples text from a language model: give a CharLM checkpoint (e.g. from `laart-lab fit "
            "--config charlm_shakespeare_softmax_cpu`)"
        )
    try:
        model = CharLM.from_checkpoint(path, map_location=device)
    except (TypeError, KeyError, RuntimeError) as err:
        raise CheckpointError(
            f"checkpoint {path} does not hold a CharLM ({type(err).__name__}: {str(err).splitlines()[0]}); "
            "give a checkpoint written by `laart-lab fit` with a CharLM recipe"
        ) from err
    return model


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``laart-lab generate``; returns the process exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        model = load_charlm(args.ckpt_path, args.device)
    except CheckpointError as err:
        if debug_enabled():
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    model.to(args.device)
    tokenizer = CharTokenizer(model.hparams.get("vocabulary"))
    try:
        prompt_ids = tokenizer.encode(args.prompt, source="the prompt").tolist()
    except TextDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not prompt_ids:
        print("error: the prompt is empty; give at least one character", file=sys.stderr)
        return 2
    generator = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # byte level: emit whole characters
    out = sys.stdout
    out.write(args.prompt)
    for token in model.generate_ids(prompt_ids, args.num_chars, args.temperature, args.top_k, generator, args.window):
        out.write(tokenizer.decode([token]) if tokenizer.vocabulary is not None else decoder.decode(bytes([token])))
        out.flush()
    out.write(decoder.decode(b"", final=True) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
