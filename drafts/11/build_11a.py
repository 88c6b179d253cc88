import pathlib
import sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from nbtools import build

SOLUTIONS = "--solutions" in sys.argv
SETUP = {"tags": ["browser-setup"]}

cells = []
A = cells.append

A(("md", r"""
# 11a · The future I: scale, efficiency and data quality (未来发展趋势与挑战 · 上)

The five articles end with the same forecast (未来发展趋势与挑战): models will grow (**模型规模**, 更大更复杂的模型),
they will need more efficient hardware (**更高效的计算平台**), and data will be the limit, in quantity and in
quality (**数据的匮乏, 数据集的质量**). This notebook turns each claim into a measurement on your own machine;
notebook 11b does the same for privacy, bias and interpretability.

**What you will be able to do:** train a sweep of small GPTs and read a *scaling law* off it (loss against
compute, a power law fitted by hand); say which model size is best for a compute budget (the question that
DeepMind's Chinchilla paper answered) and extrapolate it, with a slider, to where SmolLM2 and GPT-3 sit;
count the FLOPs, seconds and (estimated) energy of your runs against chapter 01's 6·N·D; and measure what
noisy labels and duplicated text cost a model.
"""))
A(("code", r"""
import hashlib
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import labkit
from labkit import scaling
from labkit.compute import training_flops
from labkit.data import load_text
from labkit.exercises import check, compare, summary
from labkit.gpt import GPT, GPTConfig
from labkit.lm import train_lm
from labkit.tokenizers import CharTokenizer

labkit.seed_everything(0)  # the same numbers on every run (exactly, on the CPU; timings excepted)
print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
""", SETUP))

A(("md", r"""
## 1 · Scale (模型规模): a scaling law from your own runs

Kaplan et al. (2020, arXiv:2001.08361) trained hundreds of language models and found that the validation
loss falls as a **power law** of the compute spent, L(C) ≈ a · C^b with b < 0, over seven orders of
magnitude: a straight line in log–log axes. Hoffmann et al. (2022, arXiv:2203.15556, "Chinchilla") asked
the practical question: for a fixed budget C ≈ 6·N·D FLOPs (chapter 01), how should it be split between
parameters N and training tokens D?

We ask the same questions at laptop scale. Four character-level GPTs of 2 layers, 16 to 128 channels
wide, train on the shipped Shakespeare text with the same batches and a constant learning rate after a
short warm-up. Each is evaluated every 50 steps, so one run traces loss against compute as it trains:
tokens seen D grows, N is fixed. (A constant rate keeps the intermediate points honest: with a decaying
schedule, an early checkpoint would be one of a run that was never meant to stop there.)
"""))
A(("code", r"""
train_text, val_text = load_text("shakespeare", "train"), load_text("shakespeare", "val")
tokenizer = CharTokenizer(train_text + val_text)
train_ids, val_ids = (torch.tensor(tokenizer.encode(t)) for t in (train_text, val_text))
WIDTHS = (16, 32, 64, 128)                       # n_embd of the four models; 2 layers each
BATCH, BLOCK, EVERY = 8, 64, 50                  # 512 tokens a step; an evaluation every 50 steps
SWEEP_STEPS = 800

def small_gpt(width):
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=BLOCK, n_layer=2,
                       n_head=max(2, width // 32), n_embd=width)
    labkit.seed_everything(0)
    return GPT(config)

def run_sweep(steps):
    '''Train each width for `steps` steps: {N: dict(compute, loss, seconds, tokens_per_s, flops_per_token)}.'''
    runs = {}
    for width in WIDTHS:
        model = small_gpt(width)
        n = sum(p.numel() for p in model.parameters())
        history = train_lm(model, train_ids, val_ids, steps=steps, batch_size=BATCH, block_size=BLOCK,
                           lr=3e-3, min_lr=3e-3, warmup_steps=10, eval_every=EVERY, eval_batches=4,
                           peak_flops=1e11, verbose=False)
        tokens = np.array(history["step"][1:]) * BATCH * BLOCK           # tokens seen at each evaluation
        runs[n] = dict(width=width, compute=np.array([training_flops(n, d) for d in tokens]),
                       loss=np.array(history["val_loss"][1:]), seconds=history["time"][-1],
                       tokens=tokens[-1], tokens_per_s=float(np.median(history["tokens_per_s"][1:])))
    return runs
""", SETUP))
A(("code", r"""
# NBVAL_IGNORE_OUTPUT
start = time.perf_counter()
runs = run_sweep(SWEEP_STEPS)
print(f"{len(runs)} runs of {SWEEP_STEPS} steps in {time.perf_counter() - start:.0f} s")
for n, run in runs.items():
    print(f"width {run['width']:>3}: N = {n:>7,} parameters, final validation loss {run['loss'][-1]:.3f} nats, "
          f"{run['seconds']:.1f} s")
""", {"tags": ["browser-setup"], "labkit": {"browser_stand_in":
    "# The browser test's stand-in for the sweep above (tests/notebook_cells.py): the same runs, 5x shorter.\n"
    "runs = run_sweep(SWEEP_STEPS // 5)\n"}}))
A(("md", r"""
### 1.1 The frontier and a power law fitted by hand

Plot every evaluation of every run as loss against compute. Early on, the small models are ahead (they learn faster per FLOP); a larger model wins only once a smaller
one has trained long enough to slow down. The lowest loss reached at each compute, over all
runs, is the **compute-efficient frontier**. We fit L(C) = a · C^b to it by least squares on the logarithms:
with u = log C and v = log L, the slope b = cov(u, v) / var(u) and log a = mean(v) − b · mean(u).
`labkit.scaling.fit_power_law` is this fit; tests/test_scaling.py proves it equal to `numpy.polyfit` and
SciPy's `curve_fit`.
"""))
A(("code", r"""
curves = {n: (run["compute"], run["loss"]) for n, run in runs.items()}
low = max(run["compute"][0] for run in runs.values())            # every run has started here
high = max(run["compute"][-1] for run in runs.values())
grid = np.logspace(np.log10(low), np.log10(high), 24)
best_loss, best_n = scaling.frontier(curves, grid)
keep = ~np.isnan(best_loss)

u, v = np.log(grid[keep]), np.log(best_loss[keep])               # by hand, in log space
b_hand = ((u - u.mean()) * (v - v.mean())).sum() / ((u - u.mean()) ** 2).sum()
a_hand = np.exp(v.mean() - b_hand * u.mean())
loss_law, size_law = scaling.compute_optimal(curves, grid)
compare("exponent b: by hand vs labkit.scaling", torch.tensor(b_hand), torch.tensor(loss_law.exponent))
compare("exponent b: by hand vs numpy.polyfit", torch.tensor(b_hand), torch.tensor(np.polyfit(u, v, 1)[0]))
print(f"frontier: L(C) = {loss_law.coefficient:.3g} · C^({loss_law.exponent:.4f}); "
      f"compute-optimal size: N_opt(C) = {size_law.coefficient:.3g} · C^({size_law.exponent:.3f})")
assert loss_law.exponent < 0, "the frontier's loss should fall with compute"
""", SETUP))
A(("code", r"""
SMOLLM2 = dict(N=135e6, D=2e12)      # SmolLM2-135M: 2 trillion tokens (Allal et al. 2025, arXiv:2502.02737)
GPT3 = dict(N=175e9, D=300e9)        # GPT-3: 175B parameters, 300B tokens (Brown et al. 2020, arXiv:2005.14165)
landmarks = {name: training_flops(m["N"], m["D"]) for name, m in (("SmolLM2-135M", SMOLLM2), ("GPT-3", GPT3))}

def draw_scaling(ax, log10_budget=None):
    '''The runs, the frontier, the fitted law out to `log10_budget`, and the landmarks.'''
    for (n, run), colour in zip(runs.items(), ("C0", "C1", "C2", "C3")):
        ax.plot(run["compute"], run["loss"], ".-", color=colour, alpha=0.6, label=f"N = {n:,}")
    ax.plot(grid[keep], best_loss[keep], "k-", linewidth=3, alpha=0.3, label="frontier")
    right = max(high, 10.0 ** (log10_budget or 0))
    xs = np.logspace(np.log10(low), np.log10(right), 50)
    ax.plot(xs, loss_law(xs), "k--", linewidth=1, label=f"fit: {loss_law.coefficient:.3g}·C^({loss_law.exponent:.3f})")
    if log10_budget is not None:
        budget = 10.0 ** log10_budget
        ax.plot(budget, loss_law(budget), "r*", markersize=16,
                label=f"C = 1e{log10_budget:.1f}: L = {loss_law(budget):.2f}, N_opt = {size_law(budget):.3g}")
        for name, flops in landmarks.items():
            if flops <= right:
                ax.axvline(flops, color="grey", linestyle=":")
                ax.text(flops, ax.get_ylim()[1], f" {name}", rotation=90, va="top", fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="training compute C = 6·N·D (FLOPs)",
           ylabel="validation loss (nats per character)", title="损失与计算量：缩放定律")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
""", SETUP))
A(("code", r"""
fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
draw_scaling(ax)
plt.show()
"""))
A(("md", r"""
Read the picture. Each coloured line is one model learning. At equal compute, a smaller model is ahead
for as long as its run lasts: our runs are short, the larger models far below the ~20 tokens per parameter
that Chinchilla found best (the next cell prints each run's ratio). Where a smaller run stops, the frontier
(thick grey) jumps up to the next larger model, which at that compute is above where the smaller one would
have gone had it kept training; longer runs would smooth these steps away. Across the steps the frontier
falls roughly along a straight line in log–log axes, which is what a power law looks like. Set the fitted
exponent beside Kaplan et al.'s, about −0.05 for word-piece tokens and models a million times larger: from
four short runs ours is a rough estimate, not a law.

### 1.2 How big a model for a budget? Chinchilla's question at laptop scale

At each compute of the grid, the frontier says which of our four sizes was best. Fitting N_opt(C) = k · C^e
to those sizes gives how fast the best size should grow with the budget. Chinchilla found e ≈ 0.5:
parameters and tokens should grow together, about 20 tokens per parameter. With four sizes our estimate is
coarse (the best size jumps from one width to the next), but its sign and rough size can be compared.
"""))
A(("code", r"""
for n, run in runs.items():
    print(f"N = {n:>7,}: {run['tokens'] / n:6.1f} tokens per parameter at the end of its run")
print(f"\nour compute-optimal size grows as C^{size_law.exponent:.2f} (Chinchilla: C^0.50, Kaplan: C^0.73)")
budget = high
n_ours = size_law(budget)
n_chin, d_chin = scaling.chinchilla_optimal(budget)
print(f"for our largest budget, {budget:.2e} FLOPs: our fit says N ≈ {n_ours:,.0f}; "
      f"Chinchilla's 20 tokens per parameter says N ≈ {n_chin:,.0f} on D ≈ {d_chin:,.0f} tokens")
"""))
A(("md", r"""
### 1.3 Extrapolating, with a slider (and why to distrust it)

The slider moves a compute budget along the axis; the red star is the fitted law's prediction there and the
compute-optimal size. Dotted lines mark where SmolLM2-135M (135 M parameters on 2 trillion tokens, its
authors' report) and GPT-3 (175 B on 300 billion tokens) sit on the same compute axis, from C = 6·N·D.

What is comparable: the compute. What is not: the loss. Theirs is measured per BPE token on web text,
ours per character on Shakespeare; a model's loss also cannot fall below the entropy of the text, and a
pure power law ignores that floor (Chinchilla fits L = E + A/N^α + B/D^β for that reason). Far beyond
the data, the prediction is a line drawn on a ruler, not a measurement.
"""))
A(("code", r"""
# NBVAL_IGNORE_OUTPUT
def show_budget(log10_budget):
    fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
    draw_scaling(ax, log10_budget)
    plt.show()

widgets.interact(show_budget, log10_budget=widgets.FloatSlider(
    value=15.0, min=12.0, max=24.0, step=0.5, description="log₁₀ C", continuous_update=False));
""", {"tags": ["browser-test"]}))

A(("md", r"""
## 2 · Efficiency (更高效的计算平台): FLOPs, seconds and energy

Chapter 01 estimated training compute as 6·N·D and time as compute divided by the machine's speed. Here
are the measured numbers of the sweep. `achieved` is 6·N·(tokens per second): the useful FLOPs per
second the run delivered by the 6·N·D count. `train_lm` also counts the attention scores, which 6·N·D
leaves out (chapter 01); for these tiny models with a context of 64 they are a large share.

Energy needs a power figure that we cannot measure from Python: **we assume 30 W** for a laptop processor
busy on two cores (an assumption: such chips draw roughly 15–45 W under load; a wall-socket meter would
tell you yours). For scale, Patterson et al. (2021, arXiv:2104.10350) estimated GPT-3's training at
1,287 MWh.
"""))
A(("code", r"""
WATTS = 30.0                                         # an assumption, not a measurement (see above)
GPT3_JOULES = 1287e6 * 3600                          # 1,287 MWh (Patterson et al. 2021)
print(f"{'N':>8} {'6·N·D FLOPs':>12} {'seconds':>8} {'tokens/s':>9} {'achieved GFLOP/s':>17} {'joules':>7}")
for n, run in runs.items():
    flops = training_flops(n, run["tokens"])
    achieved = 6 * n * run["tokens_per_s"]
    print(f"{n:>8,} {flops:>12.3g} {run['seconds']:>8.1f} {run['tokens_per_s']:>9,.0f} "
          f"{achieved / 1e9:>17.3f} {WATTS * run['seconds']:>7.0f}")
total_flops = sum(training_flops(n, run["tokens"]) for n, run in runs.items())
total_seconds = sum(run["seconds"] for run in runs.values())
ours = total_flops / (WATTS * total_seconds)
theirs = training_flops(GPT3["N"], GPT3["D"]) / GPT3_JOULES
print(f"\nthe sweep: {total_flops:.3g} FLOPs in {total_seconds:.0f} s ≈ {WATTS * total_seconds / 3600:.2f} Wh; "
      f"{ours:.3g} useful FLOPs per joule")
print(f"GPT-3: {training_flops(GPT3['N'], GPT3['D']):.3g} FLOPs on ≈ 1,287 MWh: {theirs:.3g} FLOPs per joule, "
      f"{theirs / ours:,.0f}× ours")
"""))
A(("md", r"""
The small models deliver a tiny fraction of the processor's matrix speed (chapter 08a measured its
roofline): a matrix 16 wide is too small to keep the vector units busy, and the fixed cost of each step
(Python, kernel launches, the optimizer) dominates. Efficiency grows with size, one reason the frontier
favours larger models as compute grows. The GPUs of GPT-3's training did far more useful work per joule
than this processor does on small matrices.

The levers chapter 08 measured, each with its own notebook: mixed precision (bf16, 08a) and activation
checkpointing (08a) for memory and speed; data parallelism with `torchrun` (08b); pruning and quantization
(08c), which make *inference* cheaper; distillation and mixtures of experts (08d), which buy quality per
active parameter. The article's "更高效的计算平台" is, in practice, these levers plus hardware built for them.
"""))

A(("md", r"""
## 3 · Data quality (数据的匮乏, 数据集的质量)

### 3.1 Label noise

The articles warn that a dataset's quality limits the model. We make the damage measurable: corrupt a
fraction of the MNIST training labels (each corrupted label moved to another class at random), train the
same small network, and measure accuracy on the *clean* test labels.
"""))
A(("code", r"""
(x_train, y_train), (x_test, y_test) = (labkit.load_images("mnist", split) for split in ("train", "test"))
x_train, x_test = (x.float().div(255).flatten(1) for x in (x_train, x_test))     # (N, 784) in [0, 1]

def corrupt_labels(labels, rate, num_classes, generator):
    noisy = labels.clone()
    k = round(rate * len(labels))
    chosen = torch.randperm(len(labels), generator=generator)[:k]       # which labels to corrupt
    shift = torch.randint(1, num_classes, (k,), generator=generator)   # 1 … 9: always another class
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    return noisy

def accuracy_with_noise(rate):
    labels = corrupt_labels(y_train, rate, 10, torch.Generator().manual_seed(0))
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    labkit.fit(model, TensorDataset(x_train, labels), epochs=2, lr=1e-3, batch_size=64, seed=0, verbose=False)
    with torch.no_grad():
        return (model(x_test).argmax(1) == y_test).float().mean().item(), (labels != y_train).float().mean().item()

RATES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
noise_accuracy = {}
for rate in RATES:
    noise_accuracy[rate], changed = accuracy_with_noise(rate)
    print(f"{changed:4.0%} of the training labels wrong → test accuracy {noise_accuracy[rate]:.2%}")
assert noise_accuracy[0.0] > 0.9 and noise_accuracy[0.6] < noise_accuracy[0.0]
"""))
A(("code", r"""
fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
ax.plot([100 * r for r in RATES], [100 * a for a in noise_accuracy.values()], "o-")
ax.set(xlabel="training labels corrupted (%)", ylabel="clean test accuracy (%)", title="标签噪声与准确率")
ax.grid(alpha=0.3)
plt.show()
"""))
A(("md", r"""
Accuracy falls far more slowly than the labels go wrong. With ten classes and the wrong labels spread over
the nine others, even at 60 % noise the true class is still the most frequent label of each digit (40 %
against about 7 % for each other class), so a model that learns the *most likely* label learns the right
one; what it loses is confidence and, with few examples, the ability to tell noise from signal. Noise that
is *systematic* (one class always mislabelled as another) does not average out like this.

### 3.2 Duplicated text

Web-scale corpora hold many copies of the same pages; Lee et al. (2022, arXiv:2107.06499) found that
deduplicating them trains better models for the same compute. Our version: a training text made of 100,000
characters of Shakespeare plus one 2,000-character passage pasted 50 times, against the same text
deduplicated by hand (paragraphs hashed, each kept once). The same model trains for the same steps on each;
the validation text is the same.
"""))
A(("code", r"""
unique = train_text[:100_000]
passage = train_text[200_000:202_000]
duplicated = unique + "\n\n" + ("\n\n" + passage) * 50

def deduplicate(text):
    '''Keep the first copy of each paragraph (split on blank lines), by its SHA-1 hash.'''
    seen, kept = set(), []
    for paragraph in text.split("\n\n"):
        digest = hashlib.sha1(paragraph.encode()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            kept.append(paragraph)
    return "\n\n".join(kept)

deduplicated = deduplicate(duplicated)
print(f"duplicated: {len(duplicated):,} characters; deduplicated: {len(deduplicated):,} "
      f"({1 - len(deduplicated) / len(duplicated):.0%} removed)")
dedup_loss = {}
for name, text in (("duplicated", duplicated), ("deduplicated", deduplicated)):
    model = small_gpt(64)
    history = train_lm(model, torch.tensor(tokenizer.encode(text)), val_ids, steps=300, batch_size=BATCH,
                       block_size=BLOCK, lr=3e-3, eval_every=300, eval_batches=8, peak_flops=1e11, verbose=False)
    dedup_loss[name] = history["val_loss"][-1]
    print(f"{name:>12}: validation loss {dedup_loss[name]:.3f} after 300 steps")
print(f"deduplication lowers the validation loss by {dedup_loss['duplicated'] - dedup_loss['deduplicated']:.3f} nats")
"""))
A(("md", r"""
Half the duplicated corpus is one passage, so about half the training windows show the model a text it has
already seen: those steps teach it to recite the passage, not to model Shakespeare. At equal steps, the
deduplicated model saw more *different* text and generalises better. Duplication also makes memorisation
(and so leakage of what was duplicated) more likely, which notebook 11b measures with a planted secret.
"""))

A(("md", r"""
## Summary

- **Scale.** Four small GPTs traced loss against compute; their lower envelope (the frontier) is close to
  a power law L(C) = a · C^b, fitted by least squares in log space (equal to `numpy.polyfit`). The best
  model size grows with the budget; our four sizes give a coarse exponent to set beside Chinchilla's 0.5.
  Extrapolating a fitted line across many orders of magnitude, and across tokenizers and corpora, predicts
  compute, not loss.
- **Efficiency.** 6·N·D counts the useful FLOPs; small models reach a small share of the machine's speed,
  and energy follows time × power (an assumed 30 W here). Chapter 08's levers are how that share grows.
- **Data quality.** Random label noise costs accuracy slowly while the true label stays the most frequent
  one; duplicated text costs validation loss at equal compute, and deduplication by hashing is cheap.
"""))
A(("md", r"""
## 中文小结

文章在“未来发展趋势与挑战”中预言：模型规模会更大、需要更高效的计算平台、数据的数量与质量会成为瓶颈。本节在本机上把每一条都变成测量。
缩放定律：四个小型 GPT 的损失随计算量 C = 6·N·D 变化，各运行的下包络（前沿）在对数坐标中近似一条直线，即幂律 L(C) = a·C^b；我们在对数空间用最小二乘手工拟合，与 numpy.polyfit 一致。
计算最优：在每个计算预算下哪个模型最好，拟合出最优规模随预算增长的指数，与 Chinchilla 的 0.5 对照；滑块把拟合外推到 SmolLM2 和 GPT-3 的计算量，但损失不可比（分词、语料不同，且文本熵给出下限）。
效率：用实测的每秒 token 数得到实际 FLOP/s 和能耗（功率 30 W 是假设）；小模型只用到机器峰值的一小部分，第 08 章的混合精度、并行、剪枝量化、蒸馏与专家混合是提高效率的手段。
数据质量：随机标签噪声下准确率下降得比噪声率慢，因为正确标签仍是最常见的；重复文本在相同步数下使验证损失变差，按段落哈希去重简单有效。
"""))

A(("md", r"""
## Exercises

`summary("11a")` lists this notebook's exercises; each `check` below marks one done.

**11.1 A power law fitted by hand.** Write `power_law_fit(compute, loss)`: given two NumPy arrays, return
`(a, b)` with loss ≈ a · compute^b, by least squares on the logarithms, without `labkit.scaling` or
`numpy.polyfit`. The check compares with `numpy.polyfit` on three sweeps.
"""))
A(("code", r"""
def power_law_fit(compute, loss):
    raise NotImplementedError  # TODO: (a, b) with loss ≈ a · compute^b, least squares in log space

check("11.1", power_law_fit)
""" if not SOLUTIONS else r"""
def power_law_fit(compute, loss):
    u, v = np.log(compute), np.log(loss)
    b = ((u - u.mean()) * (v - v.mean())).sum() / ((u - u.mean()) ** 2).sum()
    return float(np.exp(v.mean() - b * u.mean())), float(b)

check("11.1", power_law_fit)
"""))
A(("md", r"""
**11.2 Chinchilla's rule of thumb, solved.** Chinchilla's result is often quoted as "about 20 tokens per
parameter". Write `chinchilla_size(flops, tokens_per_parameter=20)` returning `(N, D)` such that
6·N·D = flops and D = tokens_per_parameter · N. Then use it: how many parameters would Chinchilla's rule
give for the compute GPT-3 used, and how does that compare with GPT-3's 175 B?
"""))
A(("code", r"""
def chinchilla_size(flops, tokens_per_parameter=20):
    raise NotImplementedError  # TODO: (N, D) with 6·N·D = flops and D = tokens_per_parameter · N

check("11.2", chinchilla_size)
""" if not SOLUTIONS else r"""
def chinchilla_size(flops, tokens_per_parameter=20):
    n = (flops / (6 * tokens_per_parameter)) ** 0.5        # C = 6·N·(r·N) = 6r·N²
    return n, tokens_per_parameter * n

check("11.2", chinchilla_size)
n, d = chinchilla_size(landmarks["GPT-3"])
print(f"GPT-3's compute by Chinchilla's rule: {n / 1e9:.0f} B parameters on {d / 1e12:.2f} T tokens (GPT-3: 175 B on 0.3 T)")
"""))
A(("md", r"""
**11.3 Label noise at a given rate** (a variation of section 3.1). Write `noisy_labels(labels, rate,
num_classes, generator)`: a *copy* of `labels` in which exactly round(rate · n) labels are changed, each to
a different class drawn at random, every random number drawn from `generator`. Then think: at which noise
rate would the true class stop being the most frequent label of a digit, for 10 classes?
"""))
A(("code", r"""
def noisy_labels(labels, rate, num_classes, generator):
    raise NotImplementedError  # TODO: a copy with exactly round(rate · n) labels changed to another class

check("11.3", noisy_labels)
""" if not SOLUTIONS else r"""
def noisy_labels(labels, rate, num_classes, generator):
    noisy = labels.clone()
    k = round(rate * len(labels))
    chosen = torch.randperm(len(labels), generator=generator)[:k]
    noisy[chosen] = (labels[chosen] + torch.randint(1, num_classes, (k,), generator=generator)) % num_classes
    return noisy

check("11.3", noisy_labels)
# the true class keeps 1 − r; each other class gets r / 9: equal when r = 0.9
"""))
A(("code", r"""
summary("11a")
""" if not SOLUTIONS else r"""
result = summary("11a")
assert result.all_passed, "every exercise of 11a should pass in the solutions"
"""))

name = "11a_scale_and_efficiency"
build(cells, f"{pathlib.Path(__file__).resolve().parent.parent}/{name}{'_solutions' if SOLUTIONS else ''}.ipynb")
print("built", len(cells), "cells")
