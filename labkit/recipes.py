"""The recipes of the GPTs the course ships, and the command that trains them (chapter 06b; DDP: 08).

    python -m labkit train shakespeare_char                          # train (or resume), then export
    torchrun --nproc_per_node=2 -m labkit train shakespeare_char     # the same run on 2 processes (DDP)
    python -m labkit train tang_char --steps 200 --out runs          # a shorter run, into runs/tang_char
    python -m labkit train shakespeare_char --export                 # export the saved run as it stands

Each recipe is data: the corpus, the tokenizer, the model and the training settings, one set
for a CPU and one for a GPU (picked automatically). The run state is saved to
``<run-dir>/<name>.run.pt`` at every evaluation, so an interrupted run continues exactly where
it stopped. When training ends, ``<out>/<name>/`` receives the weights (safetensors), config,
tokenizer, the history (CSV), a loss-curve PNG and ``meta.json`` with the command, the
machine and the final validation loss.

Under ``torchrun`` the recipe's batch is split over the ranks (a batch of 24 on 2 ranks is 12
each), so the run takes the same steps as one process would (``train_lm`` averages the
gradients; tests/test_recipes.py checks the weights agree). Rank 0 makes the tokenizer and
writes every file; the other ranks wait for it.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import data, distributed
from .checkpoints import save_checkpoint
from .device import get_device
from .files import read_torch_file
from .gpt import GPT, GPTConfig
from .lm import train_lm
from .tokenizers import BPETokenizer, CharTokenizer

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / "build" / "checkpoints"
OUT_DIR = ROOT / "checkpoints"
BPE_VOCAB_SIZE = 4096
SPECIAL_TOKENS = ("<|endoftext|>",)

# name → corpus, tokenizer, model and training settings (cpu / gpu). Batch × block = tokens per step.
# On the CPU, dropout only outside attention (attn_dropout=0.0): dropout on the attention weights makes
# a step 2.4x slower there (it leaves the fused kernel), dropout on the residual branches about 1.2x.
# Shakespeare is small enough (1 M characters, 21 passes in 3,500 steps) that without any dropout the
# validation loss levels off: the 1,200-step run ended at 1.607 with train 1.399.
RECIPES: dict[str, dict[str, Any]] = {
    "shakespeare_char": dict(
        corpus="shakespeare", tokenizer="char", prompt="ROMEO:\n",
        cpu=dict(model=dict(n_layer=6, n_head=6, n_embd=192, block_size=256, dropout=0.1, attn_dropout=0.0),
                 train=dict(steps=3500, batch_size=24, lr=2e-3, warmup_steps=100, eval_every=250)),
        gpu=dict(model=dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2),  # nanoGPT's recipe
                 train=dict(steps=5000, batch_size=64, lr=1e-3, warmup_steps=100, eval_every=250)),
    ),
    "tang_char": dict(
        corpus="tang_poems", tokenizer="char", prompt="明月",
        cpu=dict(model=dict(n_layer=4, n_head=4, n_embd=192, block_size=128, dropout=0.0),
                 train=dict(steps=2500, batch_size=32, lr=2e-3, warmup_steps=100, eval_every=250)),
        gpu=dict(model=dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2),
                 train=dict(steps=5000, batch_size=64, lr=1e-3, warmup_steps=100, eval_every=250)),
    ),
    # Chapter 06b's two runs, exactly: the notebook trains the first steps of each live, checks that its validation
    # loss there equals the shipped run's history (labkit.checkpoints.continue_shipped_run), and continues from
    # these weights (its FULL_RUN trains every step itself). The same settings on a GPU, so that each run is the
    # notebook's everywhere.
    "shakespeare_char_tiny": dict(
        corpus="shakespeare", tokenizer="char", prompt="\n",
        cpu=dict(model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),  # GPTConfig "char-tiny"
                 train=dict(steps=1200, batch_size=32, lr=2e-3, warmup_steps=100, eval_every=250, eval_batches=20)),
        gpu=dict(model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),
                 train=dict(steps=1200, batch_size=32, lr=2e-3, warmup_steps=100, eval_every=250, eval_batches=20)),
    ),
    "tang_char_tiny": dict(
        corpus="tang_poems", tokenizer="char", prompt="\n",
        cpu=dict(model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),  # GPTConfig "char-tiny"
                 train=dict(steps=800, batch_size=16, lr=3e-3, warmup_steps=50, eval_every=100, eval_batches=10)),
        gpu=dict(model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),
                 train=dict(steps=800, batch_size=16, lr=3e-3, warmup_steps=50, eval_every=100, eval_batches=10)),
    ),
    "base_bpe": dict(
        corpus="all_text", tokenizer="bpe", prompt="\n",
        cpu=dict(model=dict(n_layer=6, n_head=8, n_embd=256, block_size=256, dropout=0.0),
                 train=dict(steps=3000, batch_size=16, lr=1.5e-3, warmup_steps=100, eval_every=250)),
        gpu=dict(model=dict(n_layer=6, n_head=8, n_embd=256, block_size=256, dropout=0.1),
                 train=dict(steps=10000, batch_size=64, lr=1.5e-3, warmup_steps=200, eval_every=500)),
    ),
}

# name → the shipped checkpoint it starts from and chapter 07c's instruction-tuning settings: every
# example of datasets/instructions' train split once, the loss on the responses only.
INSTRUCT_RECIPES: dict[str, dict[str, Any]] = {
    "instruct_bpe": dict(base="base_bpe", train=dict(epochs=1, lr=1e-3, batch_size=16, warmup_steps=20)),
}


def corpus(name: str) -> tuple[str, str]:
    """(train text, validation text) of a corpus: "shakespeare", "moby_dick", "tang_poems" or
    "all_text" (every shipped English and Chinese text, joined by end-of-text markers)."""
    if name in ("shakespeare", "moby_dick"):
        return data.load_text(name, "train"), data.load_text(name, "val")
    if name == "tang_poems":
        return "\n".join(data.load_poems("train")) + "\n", "\n".join(data.load_poems("val")) + "\n"
    if name == "all_text":
        parts = [corpus(n) for n in ("shakespeare", "moby_dick", "tang_poems")]
        # The reviews' training texts, without their labels: unlabelled text from the domain the
        # fine-tuning chapter works in. Their validation and test texts stay unseen.
        parts += [("\n".join(data.load_reviews(n, "train")[0]), "\n".join(data.load_reviews(n, "val")[0]))
                  for n in ("rotten_tomatoes", "chinese_reviews")]
        sep = SPECIAL_TOKENS[0]
        return sep.join(p[0] for p in parts), sep.join(p[1] for p in parts)
    raise ValueError(f"unknown corpus {name!r}: use shakespeare, moby_dick, tang_poems or all_text")


def make_tokenizer(kind: str, text: str) -> Any:
    """A character tokenizer ("char") or a byte-level BPE of ``BPE_VOCAB_SIZE`` tokens ("bpe") of ``text``."""
    if kind == "char":
        return CharTokenizer(text)
    return BPETokenizer.train(text, BPE_VOCAB_SIZE, special_tokens=SPECIAL_TOKENS)


def train(name: str, *, export_only: bool = False, steps: int | None = None, batch_size: int | None = None,
          eval_batches: int | None = None, run_dir: Path = RUN_DIR, out_dir: Path = OUT_DIR,
          command: str = "") -> Path | None:
    """Train (or resume) recipe ``name`` and export it to ``out_dir / name``; returns that folder
    (None on ranks other than 0, which write nothing). ``steps`` and ``batch_size`` (the global
    batch, split over the ranks) and ``eval_batches`` (batches per loss estimate: the recipe's, else
    20) override the recipe's."""
    if name in INSTRUCT_RECIPES:
        if export_only or steps is not None or batch_size is not None:
            raise ValueError(f"{name} is one epoch of instruction tuning (chapter 07c's settings) and keeps no "
                             "resumable run: train it without --export, --steps or --batch-size")
        return train_instruct(name, out_dir=out_dir, command=command)
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: the recipes are {', '.join(sorted([*RECIPES, *INSTRUCT_RECIPES]))}")
    recipe = RECIPES[name]
    device = distributed.init_from_env(get_device())
    world, main = distributed.world_size(), distributed.is_main()
    setting = recipe["gpu" if device.type == "cuda" else "cpu"]
    settings = {"eval_batches": 20, **setting["train"], **({"steps": steps} if steps is not None else {}),
                **({"batch_size": batch_size} if batch_size is not None else {}),
                **({"eval_batches": eval_batches} if eval_batches is not None else {})}
    if settings["batch_size"] % world:
        raise ValueError(f"{name}'s batch of {settings['batch_size']} does not split over {world} ranks: "
                         f"pass --batch-size with a multiple of {world}, or run on a number of ranks that divides it")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run_file, tokenizer_file = run_dir / f"{name}.run.pt", run_dir / f"{name}.tokenizer.json"

    train_text, val_text = corpus(recipe["corpus"])
    if main and not tokenizer_file.exists():  # the run's tokenizer is fixed once made (a BPE takes a while)
        run_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        make_tokenizer(recipe["tokenizer"], train_text + val_text).save(tokenizer_file)
        print(f"{name}: tokenizer in {time.perf_counter() - start:.1f} s", flush=True)
    distributed.barrier()  # the other ranks read the tokenizer rank 0 made
    tokenizer = (CharTokenizer if recipe["tokenizer"] == "char" else BPETokenizer).load(tokenizer_file)
    dtype = torch.int16 if tokenizer.vocab_size < 2**15 else torch.int32
    train_ids = torch.tensor(tokenizer.encode(train_text), dtype=dtype)
    val_ids = torch.tensor(tokenizer.encode(val_text), dtype=dtype)
    if main:
        print(f"{name}: {len(train_ids):,} train / {len(val_ids):,} val tokens, vocab {tokenizer.vocab_size}, "
              f"{world} rank{'s' if world > 1 else ''}", flush=True)

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **setting["model"]))
    if not export_only:
        train_lm(model, train_ids, val_ids, **{**settings, "batch_size": settings["batch_size"] // world},
                 tokenizer=tokenizer, sample_prompt=recipe["prompt"], sample_tokens=200,
                 checkpoint=run_file, resume=True, device=device)
    distributed.barrier()  # rank 0 has written the run's last state
    if not main:
        return None
    if not run_file.exists():
        raise FileNotFoundError(f"{run_file} does not exist: train {name} first (without --export)")
    run = read_torch_file(run_file, f"Delete it and train again: python -m labkit train {name}")
    model.load_state_dict(run["model"])
    meta = dict(command=command or f"python -m labkit train {name}", world_size=world, corpus=recipe["corpus"],
                settings=settings)
    return export(name, model.cpu(), tokenizer, run["history"], meta, device, out_dir)


def train_instruct(name: str, *, out_dir: Path = OUT_DIR, command: str = "") -> Path:
    """Instruction-tune the shipped checkpoint recipe ``name`` starts from (chapter 07c's training,
    `labkit.instruct.train_instructions`) and export it to ``out_dir / name``. One process; a few
    minutes on a laptop CPU."""
    from .checkpoints import load_pretrained
    from .instruct import train_instructions

    if distributed.world_size() > 1:
        raise ValueError(f"{name} trains in one process (a few minutes): run it without torchrun")
    recipe = INSTRUCT_RECIPES[name]
    device = get_device()
    model, tokenizer, base_meta = load_pretrained(recipe["base"], device)
    history = train_instructions(model, data.load_instructions("train"), data.load_instructions("val"), tokenizer,
                                 **recipe["train"], progress=False)
    for step, loss, val in zip(history["step"], history["train_loss"], history["val_loss"]):
        print(f"{name}: step {step:.0f}: train loss {loss:.3f}, validation loss {val:.3f}", flush=True)
    meta = dict(command=command or f"python -m labkit train {name}", world_size=1, corpus="instructions",
                settings={**recipe["train"], "base": recipe["base"], "base_val_loss": base_meta["final_val_loss"]})
    return export(name, model.cpu(), tokenizer, history, meta, device, out_dir)


def export(name: str, model: GPT, tokenizer: Any, history: dict[str, list[float]], meta: dict[str, Any],
           device: torch.device, out_dir: Path = OUT_DIR) -> Path:
    """Write ``out_dir/name/``: weights, config, tokenizer, history.csv, loss.png, meta.json, README.md."""
    from .plots import plot_history

    out = Path(out_dir) / name
    final = {k: v[-1] for k, v in history.items()}
    settings = meta["settings"]
    meta = {
        "name": name,
        "command": meta["command"],
        "corpus": meta["corpus"],
        "tokenizer": type(tokenizer).__name__,
        "vocab_size": tokenizer.vocab_size,
        "parameters": model.num_parameters(),
        "steps": int(final["step"]),
        **({} if "epochs" in settings else  # an instruction-tuning batch is as long as its longest example
           {"tokens_per_step": settings["batch_size"] * model.config.block_size * settings.get("accumulation_steps", 1)}),
        "final_train_loss": round(final["train_loss"], 4),
        "final_val_loss": round(final["val_loss"], 4),
        "best_val_loss": round(min(history["val_loss"]), 4),
        "training_seconds": round(final["time"], 1),
        "mean_tokens_per_s": round(sum(history["tokens_per_s"][1:]) / max(1, len(history["tokens_per_s"]) - 1)),
        "device": str(device) + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda"
                                 else f" ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
        **({"ranks": meta["world_size"]} if meta["world_size"] > 1 else {}),
        "torch": torch.__version__,
        "settings": settings,
    }
    save_checkpoint(model, out, tokenizer=tokenizer, meta=meta)
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(history))
        writer.writerows(zip(*history.values()))
    fig = plot_history({k: history[k] for k in ("step", "train_loss", "val_loss")})
    fig.suptitle(f"{name}: final val loss {final['val_loss']:.3f} after {int(final['step'])} steps", fontsize=10)
    fig.savefig(out / "loss.png", dpi=80)
    print(f"{name}: exported to {out} — val loss {final['val_loss']:.4f}", flush=True)
    print(json.dumps(meta, indent=1, ensure_ascii=False))
    return out


def main(argv: list[str] | None = None, prog: str = "python -m labkit train") -> int:
    """The command line (``python -m labkit train`` and ``tools/train_checkpoints.py``)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = sorted([*RECIPES, *INSTRUCT_RECIPES])
    parser.add_argument("names", nargs="+", choices=names, metavar="recipe", help=f"what to train: {', '.join(names)}")
    parser.add_argument("--export", action="store_true", help="only export the saved run as it stands")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's number of steps")
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch (all ranks together)")
    parser.add_argument("--eval-batches", type=int, default=None,
                        help="batches per loss estimate (default: the recipe's, else 20)")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help=f"where the resumable run state goes (default {RUN_DIR})")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"where the checkpoint folder goes (default {OUT_DIR})")
    args = parser.parse_args(argv)
    for value, flag in ((args.steps, "--steps"), (args.batch_size, "--batch-size"), (args.eval_batches, "--eval-batches")):
        if value is not None and value < 1:
            parser.error(f"{flag} must be at least 1, got {value}")
    command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
    for name in args.names:
        try:
            train(name, export_only=args.export, steps=args.steps, batch_size=args.batch_size,
                  eval_batches=args.eval_batches, run_dir=args.run_dir, out_dir=args.out, command=command)
        except ValueError as error:  # a setting that does not fit the recipe: say so, without a traceback
            parser.error(str(error))
    return 0
