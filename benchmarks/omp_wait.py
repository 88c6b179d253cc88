"""How PyTorch's CPU threads wait: the cost of `OMP_WAIT_POLICY=PASSIVE` on a quiet machine, and
what each setting does when other work shares the cores.

PyTorch's CPU operations run on OpenMP threads (GNU libgomp in the pip wheels). Between two
operations a thread that has no work either spins (burns its core, wakes at once) or sleeps
(frees its core, wakes slower). libgomp's knobs: `OMP_WAIT_POLICY=PASSIVE` (sleep at once),
`ACTIVE` (spin), unset (spin ~300,000 iterations, then sleep; fewer when there are more threads
than cores), and `GOMP_SPINCOUNT=n` (spin n iterations, then sleep). Spinning threads make small
training steps many times slower when another kernel runs beside them; PASSIVE pays for every
wake-up on a quiet machine. "+ free cores" starts as a Jupyter kernel does after `import labkit`
(`labkit.threads.choose_threads`: watch the machine for 0.3 s, then use as many threads as other
programs leave cores free); the course's setting is GOMP_SPINCOUNT=10000 + free cores.

Each setting trains nanoGPT's CPU recipe (4 layers, 4 heads, 128 wide, block 64, batch 12,
fp32, AdamW) in a fresh process, in a rotating order, on a quiet machine and again beside a
second process doing the same training under the same setting, started HEAD_START seconds
earlier (a notebook started beside a running one, as `make test` runs two at a time). The earlier
process chose its threads while the machine was quiet: what it pays once the second one starts is
the "GOMP_SPINCOUNT=10000" row's (two threads beside a busy process). Reported: the mean ms per
step over each run (what one waits for), its ratio to PASSIVE, and each run's median.

    python benchmarks/omp_wait.py   # 4 minutes quiet; a spinning setting beside a second process
                                    # can take minutes per run: that is the finding
    python benchmarks/omp_wait.py --rounds 3 --steps 60 --settings unset "GOMP_SPINCOUNT=10000 + free cores"
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
    "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "GOMP_SPINCOUNT=100000": {"GOMP_SPINCOUNT": "100000"},
    "GOMP_SPINCOUNT=10000 + free cores": {"GOMP_SPINCOUNT": "10000", "CHOOSE_THREADS": "1"},
    "unset + free cores": {"CHOOSE_THREADS": "1"},
    "PASSIVE, 1 thread": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"},
    "unset, 1 thread": {"OMP_NUM_THREADS": "1"},
}


HEAD_START = 5.0  # seconds the second process trains alone before the measured one starts


def child(steps: int) -> None:
    """Train nanoGPT's CPU recipe for `steps` steps; print the mean and median ms per step (after 5 warm-up steps)."""
    import torch

    from labkit.gpt import GPT, GPTConfig
    from labkit.lm import configure_optimizer, lm_loss
    from labkit.threads import choose_threads

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    model = GPT(config).train()
    optimizer = configure_optimizer(model, 1e-3)
    data = torch.randint(0, 65, (100_000,))
    if os.environ.get("CHOOSE_THREADS") == "1":
        choose_threads()  # as `import labkit` does in a Jupyter kernel
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
    print(f"{1000 * statistics.mean(times[5:]):.2f} {1000 * statistics.median(times[5:]):.2f}")


def run(setting: str, steps: int, beside: bool) -> tuple[float, float]:
    """Mean and median ms/step of one child process under `setting`; with `beside`, a second child under the
    same setting trains at the same time (its time is not counted)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "CHOOSE_THREADS")}
    env.update(SETTINGS[setting])
    command = [sys.executable, __file__, "--child", str(steps)]
    other = subprocess.Popen([sys.executable, __file__, "--child", str(steps * 10)], env=env,
                             stdout=subprocess.DEVNULL) if beside else None
    if other is not None:
        time.sleep(HEAD_START)  # the other process is training when this one starts, as in a kernel started beside a running one
    try:
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    finally:
        if other is not None:
            other.kill()
            other.wait()
    mean, median = out.strip().splitlines()[-1].split()
    return float(mean), float(median)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS), metavar="NAME",
                        help="the settings to compare (PASSIVE is always among them): " + "; ".join(SETTINGS))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    names = ["PASSIVE", *(name for name in args.settings if name != "PASSIVE")]
    for beside in (False, True):
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:  # a rotating order
                runs[name].append(run(name, args.steps, beside))
        title = "beside a second training process" if beside else "quiet"
        base = statistics.median(mean for mean, _ in runs["PASSIVE"])
        print(f"\n{title}: ms/step over {args.rounds} processes of {args.steps} steps each "
              "(the median process's mean step; each process's median step)")
        for name in names:
            m = statistics.median(mean for mean, _ in runs[name])
            print(f"  {name:<32}{m:8.1f} ms   {base / m:5.2f}x PASSIVE's speed   (medians: "
                  + ", ".join(f"{median:.0f}" for _, median in runs[name]) + ")", flush=True)


if __name__ == "__main__":
    main()
