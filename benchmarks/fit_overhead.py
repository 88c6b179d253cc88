"""How much does `labkit.fit` cost over a hand-written PyTorch loop?

Both train the same model on the same data with the same batch size and optimizer, one epoch
at a time plus a validation pass, interleaved in one process (in a rotating order) so that
machine noise hits both alike. Prints the median time per epoch of each and their ratio.

    python benchmarks/fit_overhead.py            # MLP and CNN on Fashion-MNIST
    python benchmarks/fit_overhead.py --rounds 7 --model mlp
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

import labkit
from labkit.training import fit


def build(kind: str) -> nn.Module:
    if kind == "mlp":  # the articles' MLP: 784 → 128 → 64 → 10
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    return nn.Sequential(  # the articles' CNN: conv 32@3×3 → max-pool → dense 128 → dense 10
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 13 * 13, 128), nn.ReLU(), nn.Linear(128, 10)
    )


def hand_written_epoch(model: nn.Module, train: TensorDataset, val: TensorDataset, batch_size: int) -> float:
    """The loop a PyTorch user writes by hand: train one epoch, then measure loss and accuracy on val.

    Like each `fit(..., epochs=1)` call it compares with, it starts a fresh Adam optimizer.
    """
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(train, batch_size=None, sampler=BatchSampler(RandomSampler(train), batch_size, drop_last=False))
    model.train()
    total_loss, correct, seen = 0.0, torch.zeros(()), 0
    for x, y in loader:
        out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total_loss += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum()
        seen += len(y)
    model.eval()
    val_loss, val_correct = torch.zeros(()), torch.zeros(())
    with torch.no_grad():
        for x, y in DataLoader(val, batch_size=None, sampler=BatchSampler(range(len(val)), max(batch_size, 256), drop_last=False)):
            out = model(x)
            val_loss += nn.functional.cross_entropy(out, y) * len(y)
            val_correct += (out.argmax(1) == y).sum()
    return total_loss / seen + correct.item() / seen + val_loss.item() + val_correct.item()


def measure(kind: str, train: TensorDataset, val: TensorDataset, batch_size: int, rounds: int) -> None:
    torch.manual_seed(0)
    model_fit, model_loop = build(kind), build(kind)
    model_loop.load_state_dict(model_fit.state_dict())
    times: dict[str, list[float]] = {"fit": [], "fit + progress bar": [], "hand-written loop": []}
    names = list(times)
    for r in range(rounds + 1):  # round 0 warms up both and is not counted
        for name in names[r % 3 :] + names[: r % 3]:  # rotate the order: no variant always runs first
            start = time.perf_counter()
            if name == "hand-written loop":
                hand_written_epoch(model_loop, train, val, batch_size)
            else:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    fit(model_fit, train, val, epochs=1, lr=1e-3, batch_size=batch_size, verbose=name != "fit")
            if r:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["hand-written loop"])
    print(f"\n{kind.upper()}: {len(train)} training + {len(val)} validation examples, batch {batch_size}, "
          f"{rounds} rounds, {torch.get_num_threads()} threads")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<20} {median:6.3f} s/epoch   ratio to hand-written loop {median / base:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", choices=["mlp", "cnn", "both"], default="both")
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    images, labels = labkit.load_images("fashion_mnist", "train")
    x = (images[: args.train_size + 5000].float() / 255).unsqueeze(1)
    y = labels[: args.train_size + 5000]
    train = TensorDataset(x[: args.train_size], y[: args.train_size])
    val = TensorDataset(x[args.train_size :], y[args.train_size :])
    for kind in (["mlp", "cnn"] if args.model == "both" else [args.model]):
        measure(kind, train, val, args.batch_size, args.rounds)


if __name__ == "__main__":
    main()
