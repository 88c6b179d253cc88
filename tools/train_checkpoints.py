"""Train the GPT checkpoints the course ships (checkpoints/<name>/), with the course's own code.

    python tools/train_checkpoints.py shakespeare_char          # train (or resume) and export
    python tools/train_checkpoints.py tang_char base_bpe
    python tools/train_checkpoints.py shakespeare_char --export  # export the run as it stands

Each recipe below is data: the corpus, the tokenizer, the model and the training settings, one
set for a CPU and one for a GPU (picked automatically). The run state is saved to
``build/checkpoints/<name>.run.pt`` at every evaluation, so an interrupted run continues
exactly where it stopped. When training ends, ``checkpoints/<name>/`` receives the weights
(safetensors), config, tokenizer, the history (CSV), a loss-curve PNG and ``meta.json`` with
the command, the machine and the final validation loss.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labkit import data  # noqa: E402
from labkit.device import get_device  # noqa: E402
from labkit.gpt import GPT, GPTConfig  # noqa: E402
from labkit.lm import train_lm  # noqa: E402
from labkit.tokenizers import BPETokenizer, CharTokenizer  # noqa: E402

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
    "base_bpe": dict(
        corpus="all_text", tokenizer="bpe", prompt="\n",
        cpu=dict(model=dict(n_layer=6, n_head=8, n_embd=256, block_size=256, dropout=0.0),
                 train=dict(steps=3000, batch_size=16, lr=1.5e-3, warmup_steps=100, eval_every=250)),
        gpu=dict(model=dict(n_layer=6, n_head=8, n_embd=256, block_size=256, dropout=0.1),
                 train=dict(steps=10000, batch_size=64, lr=1.5e-3, warmup_steps=200, eval_every=500)),
    ),
}


def corpus(name: str) -> tuple[str, str]:
    """(train text, validation text) of a corpus."""
    if name in ("shakespeare", "moby_dick"):
        return data.load_text(name, "train"), data.load_text(name, "val")
    if name == "tang_poems":
        return "\n".join(data.load_poems("train")) + "\n", "\n".join(data.load_poems("val")) + "\n"
    if name == "all_text":  # every shipped English and Chinese text, joined by end-of-text markers
        parts = [corpus(n) for n in ("shakespeare", "moby_dick", "tang_poems")]
        # The reviews' training texts, without their labels: unlabelled text from the domain the
        # fine-tuning chapter works in. Their validation and test texts stay unseen.
        parts += [("\n".join(data.load_reviews(n, "train")[0]), "\n".join(data.load_reviews(n, "val")[0]))
                  for n in ("rotten_tomatoes", "chinese_reviews")]
        sep = SPECIAL_TOKENS[0]
        return sep.join(p[0] for p in parts), sep.join(p[1] for p in parts)
    raise ValueError(f"unknown corpus {name!r}")


def make_tokenizer(kind: str, text: str) -> Any:
    if kind == "char":
        return CharTokenizer(text)
    return BPETokenizer.train(text, BPE_VOCAB_SIZE, special_tokens=SPECIAL_TOKENS)


def train(name: str, *, export_only: bool, steps: int | None) -> Path:
    recipe = RECIPES[name]
    device = get_device()
    setting = recipe["gpu" if device.type == "cuda" else "cpu"]
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    run_file = RUN_DIR / f"{name}.run.pt"
    tokenizer_file = RUN_DIR / f"{name}.tokenizer.json"

    train_text, val_text = corpus(recipe["corpus"])
    if tokenizer_file.exists():  # the run's tokenizer is fixed once made (a BPE takes a while to train)
        tokenizer = (CharTokenizer if recipe["tokenizer"] == "char" else BPETokenizer).load(tokenizer_file)
    else:
        start = time.perf_counter()
        tokenizer = make_tokenizer(recipe["tokenizer"], train_text + val_text)
        tokenizer.save(tokenizer_file)
        print(f"{name}: tokenizer {tokenizer} in {time.perf_counter() - start:.1f} s", flush=True)
    dtype = torch.int16 if tokenizer.vocab_size < 2**15 else torch.int32
    train_ids = torch.tensor(tokenizer.encode(train_text), dtype=dtype)
    val_ids = torch.tensor(tokenizer.encode(val_text), dtype=dtype)
    print(f"{name}: {len(train_ids):,} train / {len(val_ids):,} val tokens, vocab {tokenizer.vocab_size}", flush=True)

    config = GPTConfig(vocab_size=tokenizer.vocab_size, **setting["model"])
    torch.manual_seed(0)
    model = GPT(config)
    settings = dict(setting["train"])
    if steps is not None:
        settings["steps"] = steps
    if not export_only:
        train_lm(model, train_ids, val_ids, **settings, eval_batches=20, tokenizer=tokenizer,
                 sample_prompt=recipe["prompt"], sample_tokens=200, checkpoint=run_file, resume=True, device=device)
    if not run_file.exists():
        raise SystemExit(f"{run_file} does not exist: train {name} first (without --export)")
    run = torch.load(run_file, map_location="cpu", weights_only=True)
    model.load_state_dict(run["model"])
    return export(name, model, tokenizer, run["history"], recipe, settings, device)


def export(name: str, model: GPT, tokenizer: Any, history: dict[str, list[float]], recipe: dict[str, Any],
           settings: dict[str, Any], device: torch.device) -> Path:
    """Write checkpoints/<name>/: weights, config, tokenizer, history.csv, loss.png, meta.json, README.md."""
    from labkit.gpt import save_checkpoint
    from labkit.plots import plot_history

    out = OUT_DIR / name
    final = {k: v[-1] for k, v in history.items()}
    meta = {
        "name": name,
        "command": "python tools/train_checkpoints.py " + " ".join(sys.argv[1:]) if sys.argv[1:] else name,
        "corpus": recipe["corpus"],
        "tokenizer": type(tokenizer).__name__,
        "vocab_size": tokenizer.vocab_size,
        "parameters": model.num_parameters(),
        "steps": int(final["step"]),
        "tokens_per_step": settings["batch_size"] * model.config.block_size * settings.get("accumulation_steps", 1),
        "final_train_loss": round(final["train_loss"], 4),
        "final_val_loss": round(final["val_loss"], 4),
        "best_val_loss": round(min(history["val_loss"]), 4),
        "training_seconds": round(final["time"], 1),
        "mean_tokens_per_s": round(sum(history["tokens_per_s"][1:]) / max(1, len(history["tokens_per_s"]) - 1)),
        "device": str(device) + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else f" ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
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
    print(f"{name}: exported to {out.relative_to(ROOT)} — val loss {final['val_loss']:.4f}", flush=True)
    print(json.dumps(meta, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=sorted(RECIPES), help="checkpoints to train")
    parser.add_argument("--export", action="store_true", help="only export the saved run as it stands")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's number of steps")
    args = parser.parse_args(argv)
    for name in args.names:
        train(name, export_only=args.export, steps=args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
