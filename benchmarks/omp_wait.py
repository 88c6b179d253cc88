"""How PyTorch's CPU threads wait: the cost of `OMP_WAIT_POLICY=PASSIVE` on a quiet machine, and
what each setting does when other work shares the cores.

PyTorch's CPU operations run on OpenMP threads (GNU libgomp in the pip wheels). Between two
operations a thread that has no work either spins (burns its core, wakes at once) or sleeps
(frees its core, wakes slower). libgomp's knobs: `OMP_WAIT_POLICY=PASSIVE` (sleep at once),
`ACTIVE` (spin), unset (spin ~300,000 iterations, then sleep; fewer when there are more threads
than cores), and `GOMP_SPINCOUNT=n` (spin n iterations, then sleep). The Makefile exports
PASSIVE because spinning threads made small training steps up to 80x slower when another
kernel ran beside them; on a quiet machine PASSIVE pays for every wake-up.

Each setting trains nanoGPT's CPU recipe (4 layers, 4 heads, 128 wide, block 64, batch 12,
fp32, AdamW) in a fresh process, in a rotating order, on a quiet machine and again beside a
second process doing the same training (two notebooks at once, as `make test` runs them).
Reported: the median ms per step and the ratio to PASSIVE.

    python benchmarks/omp_wait.py   # 3 minutes quiet; a spinning setting beside a second process
                                    # can take minutes per run: that is the finding
    python benchmarks/omp_wait.py --rounds 5 --steps 60
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

SETTINGS: dict[str, dict[str, str]] = {
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "unset": {},
    "ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "GOMP_SPINCOUNT=100000": {"GOMP_SPINCOUNT": "100000"},
}


def child(steps: int) -> None:
    """Train nanoGPT's CPU recipe for `steps` steps; print the median ms per step (after 5 warm-up steps)."""
    import torch

    from labkit.gpt import GPT, GPTConfig
    from labkit.lm import configure_optimizer, lm_loss

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    model = GPT(config).train()
    optimizer = configure_optimizer(model, 1e-3)
    data = torch.randint(0, 65, (100_000,))
    times = []
    for _step in range(steps + 5):
        ix = torch.randint(0, len(data) - 65, (12,))
        x = torch.stack([data[i: i + 64] for i in ix])
        y = torch.stack([data[i + 1: i + 65] for i in ix])
        start = time.perf_counter()
        loss = lm_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    print(f"{1000 * statistics.median(times[5:]):.2f}")


def run(setting: str, steps: int, beside: bool) -> float:
    """Median ms/step of one child process under `setting`; with `beside`, a second child under the
    same setting trains at the same time (its time is not counted)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(SETTINGS[setting])
    command = [sys.executable, __file__, "--child", str(steps)]
    other = subprocess.Popen([sys.executable, __file__, "--child", str(steps * 3)], env=env,
                             stdout=subprocess.DEVNULL) if beside else None
    try:
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    finally:
        if other is not None:
            other.kill()
            other.wait()
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    names = list(SETTINGS)
    for beside in (False, True):
        ms: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:  # a rotating order
                ms[name].append(run(name, args.steps, beside))
        title = "beside a second training process" if beside else "quiet"
        base = statistics.median(ms["PASSIVE"])
        print(f"\n{title}: median ms/step over {args.rounds} processes of {args.steps} steps each")
        for name in names:
            m = statistics.median(ms[name])
            print(f"  {name:<22}{m:8.1f} ms   {base / m:5.2f}x PASSIVE's speed   (runs: "
                  + ", ".join(f"{v:.0f}" for v in ms[name]) + ")", flush=True)


if __name__ == "__main__":
    main()
