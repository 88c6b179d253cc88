import pathlib
import sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from nbtools import build

SOLUTIONS = "--solutions" in sys.argv
SETUP = {"tags": ["browser-setup"]}
cells = []
A = cells.append

A(("md", r"""
# 11b · The future II: privacy, bias and interpretability (未来发展趋势与挑战 · 下)

Beyond scale, the articles name three challenges that are not about speed: **data security and privacy**
(数据安全、泄露用户数据、隐私保护), **bias** in the data and the models (数据偏差) with the social
responsibility it brings, and **interpretability** (模型解释性). Each becomes a measurement here.

**What you will be able to do:** plant a secret (a *canary*) in training text, train a GPT, and measure
how exposed the secret is, by ranking it among all possible secrets and by sampling; train with
differentially private SGD built by hand (per-example clipping and Gaussian noise) and read the
privacy–accuracy trade-off with its ε; measure a gender bias in a sentiment classifier with counterfactual
pairs and a confidence interval, and try one mitigation; and look inside models: attention maps of the
course GPT with sliders, linear probes of its layers against a control, and saliency maps of the CNN.
"""))
A(("code", r"""
import re
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.utils.data import TensorDataset

import labkit
from labkit import privacy
from labkit.data import load_reviews, load_text
from labkit.exercises import check, compare, summary
from labkit.gpt import GPT, GPTConfig
from labkit.lm import train_lm
from labkit.metrics import accuracy_interval
from labkit.tokenizers import CharTokenizer

labkit.seed_everything(0)  # the same numbers on every run (exactly, on the CPU; timings excepted)
print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
""", SETUP))

A(("md", r"""
## 1 · Privacy (数据安全与隐私保护)

### 1.1 A planted secret: how exposed is it?

Language models can repeat their training data. Carlini et al. ("The Secret Sharer", 2019,
arXiv:1802.08232) measured it with a **canary**: a made-up secret such as "my PIN is 7351" inserted into the
training text. After training, score every possible secret of the same form (all 10,000 PINs) by the
model's log-likelihood and find the canary's **rank**. The **exposure** is log₂(10,000) − log₂(rank): about
1 bit when the model knows nothing (the canary sits mid-pack), log₂ 10,000 ≈ 13.3 bits when it ranks first.

We insert the canary k times into 100,000 characters of Shakespeare, beside 300 lines with *other* random
numbers (so that every digit is common and the model cannot win by knowing which digits exist), and train
the same small GPT for each k. k = 0 is the control: no canary at all.
"""))
A(("code", r"""
PREFIX, SECRET = "\nmy PIN is ", "7351"
base_text = load_text("shakespeare", "train")[:100_000]
lines = base_text.split("\n")
rng = np.random.default_rng(0)
decoys = [f"room {rng.integers(0, 10_000):04d}" for _ in range(300)]      # other numbers, every digit common
tokenizer = CharTokenizer(load_text("shakespeare") + "0123456789")
val_ids = torch.tensor(tokenizer.encode(load_text("shakespeare", "val")))

def text_with_canary(k):
    out = list(lines)
    for extra in decoys + [PREFIX.strip() + " " + SECRET] * k:                # insert at random line breaks
        out.insert(int(rng.integers(0, len(out))), extra)
    return "\n".join(out)

def train_char_gpt(text, steps=300):
    labkit.seed_everything(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=4, n_embd=64))
    train_lm(model, torch.tensor(tokenizer.encode(text)), val_ids, steps=steps, batch_size=16, lr=3e-3,
             eval_every=steps, eval_batches=4, peak_flops=1e11, verbose=False)
    return model.eval()

candidates = [f"{pin:04d}" for pin in range(10_000)]

def secret_scores(model):
    '''Log-likelihood of the 4 digits after PREFIX, for every candidate: (10000,).'''
    ids = torch.tensor([tokenizer.encode(PREFIX + c) for c in candidates])          # (10000, 15)
    with torch.no_grad():
        logp = model(ids[:, :-1]).log_softmax(-1)                                    # (10000, 14, V)
    picked = logp.gather(2, ids[:, 1:, None])[:, -4:, 0]                             # the 4 digits' log-probs
    return picked.sum(1)
"""))
A(("code", r"""
# NBVAL_IGNORE_OUTPUT
canary_models, exposures = {}, {}
start = time.perf_counter()
for k in (0, 4, 32):
    canary_models[k] = train_char_gpt(text_with_canary(k))
    scores = secret_scores(canary_models[k])
    canary_score = scores[candidates.index(SECRET)].item()
    rank = 1 + int((scores > canary_score).sum())                    # by hand …
    exposures[k] = privacy.exposure(canary_score, scores)            # … and labkit's
    assert abs(exposures[k] - (np.log2(len(candidates)) - np.log2(rank))) < 1e-9
    print(f"canary inserted {k:>2}×: rank {rank:>5} of {len(candidates)}, exposure {exposures[k]:5.2f} bits")
print(f"({time.perf_counter() - start:.0f} s)")
assert exposures[32] > exposures[0] + 3, "32 copies should expose the canary far more than none"
"""))
A(("md", r"""
**Extraction by sampling.** An attacker who knows only the prefix asks the model to complete it. We sample
200 completions of "my PIN is " at temperature 1 and count how often the secret comes out.
"""))
A(("code", r"""
def extraction_rate(model, samples=200):
    torch.manual_seed(0)
    prompt = torch.tensor([tokenizer.encode(PREFIX)] * samples)
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=4, temperature=1.0)
    completions = [tokenizer.decode(row[-4:].tolist()) for row in out]
    return sum(c == SECRET for c in completions) / samples, completions[:8]

for k, model in canary_models.items():
    rate, some = extraction_rate(model)
    print(f"canary {k:>2}×: the secret in {rate:6.1%} of 200 samples; first completions {some}")
"""))
A(("md", r"""
Compare the two tests. Ranking is the sensitive one: with enough copies the canary climbs from the middle
of the 10,000 candidates towards the top, although plain sampling at temperature 1 may still rarely or never
produce it. An attacker who can *score* candidates (anyone with the model's probabilities) learns far more
than one who only samples. That is the article's "泄露用户数据" in numbers: a model trained on private text
can hand it back, and the more often the text was repeated (notebook 11a's duplicates), the more it leaks.

### 1.2 Differentially private SGD, by hand

DP-SGD (Abadi et al. 2016, arXiv:1607.00133) bounds what any one training example can do to the model:

1. compute each example's gradient separately (per-example gradients: `torch.func.vmap` over `grad`);
2. **clip** each to norm ≤ C: g_i · min(1, C / ‖g_i‖);
3. sum them, add Gaussian **noise** N(0, (σC)²) to every coordinate, divide by the batch size B.

The noise multiplier σ sets the privacy: the *Rényi DP accountant* (Mironov et al. 2019) turns the sampling
rate q = B / n, σ and the number of steps into an (ε, δ) guarantee; `labkit.privacy.epsilon` implements it,
and tests/test_privacy.py proves it equal to Opacus's. (The accountant assumes each example joins each
batch independently with probability q; we shuffle into fixed-size batches, the common practice, which the
bound does not strictly cover.) First, per-example gradients and clipping by hand, checked against a loop.
"""))
A(("code", r"""
(x_train, y_train), (x_test, y_test) = (labkit.load_images("mnist", split) for split in ("train", "test"))
x_train, x_test = (x.float().div(255).flatten(1) for x in (x_train, x_test))     # (N, 784)

labkit.seed_everything(0)
net = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))

def example_loss(params, x, y):
    return nn.functional.cross_entropy(functional_call(net, params, (x[None],)), y[None])

def per_example_grads(params, x, y):
    '''(B, P): row i is example i's gradient, flattened.'''
    g = vmap(grad(example_loss), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g[name].reshape(len(x), -1) for name in params], dim=1)

params = {name: p.detach() for name, p in net.named_parameters()}
xb, yb = x_train[:8], y_train[:8]
G = per_example_grads(params, xb, yb)
loop = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
    example_loss(dict(net.named_parameters()), xb[i], yb[i]), list(net.parameters()))]) for i in range(8)])
compare("per-example gradients: vmap vs a loop", G, loop, atol=1e-6)
clipped_by_hand = G * (1.0 / G.norm(dim=1, keepdim=True)).clamp(max=1.0)
compare("clipped: by hand vs labkit.privacy", clipped_by_hand, privacy.clip_per_example(G, 1.0), atol=1e-6)
print(f"norms before clipping: {G.norm(dim=1).numpy().round(2)}; after: {clipped_by_hand.norm(dim=1).numpy().round(2)}")
"""))
A(("code", r"""
# NBVAL_IGNORE_OUTPUT
def train_dp(sigma, clip=1.0, batch=256, epochs=2, lr=0.5, private=True):
    labkit.seed_everything(0)
    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    names = [n for n, _ in model.named_parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    noise = torch.Generator().manual_seed(1)
    steps = 0
    for epoch in range(epochs):
        for idx in torch.randperm(len(x_train)).split(batch):
            params = {n: p.detach() for n, p in model.named_parameters()}
            g = vmap(grad(lambda p, x, y: nn.functional.cross_entropy(functional_call(model, p, (x[None],)), y[None])),
                     in_dims=(None, 0, 0))(params, x_train[idx], y_train[idx])
            flat = torch.cat([g[n].reshape(len(idx), -1) for n in names], dim=1)
            mean = privacy.noisy_mean_gradient(flat, clip, sigma, noise) if private else flat.mean(0)
            offset = 0
            for p in model.parameters():
                p.grad = mean[offset:offset + p.numel()].view_as(p).clone()
                offset += p.numel()
            optimizer.step()
            steps += 1
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    return accuracy, steps

start = time.perf_counter()
dp_results = {"not private": train_dp(0.0, private=False)}
for sigma in (0.0, 0.5, 1.0, 4.0):
    dp_results[sigma] = train_dp(sigma)
q = 256 / len(x_train)
for key, (acc, steps) in dp_results.items():
    eps = privacy.epsilon(q, key, steps) if isinstance(key, float) and key > 0 else float("inf")
    label = key if isinstance(key, str) else f"σ = {key}"
    print(f"{label:>12}: test accuracy {acc:.2%}, ε = {eps:.3g} at δ = 1e-5 after {steps} steps")
print(f"({time.perf_counter() - start:.0f} s)")
"""))
A(("code", r"""
sigmas = [s for s in dp_results if isinstance(s, float) and s > 0]
fig, ax = plt.subplots(figsize=(6.5, 3.3), layout="constrained")
eps = [privacy.epsilon(q, s, dp_results[s][1]) for s in sigmas]
ax.plot(eps, [100 * dp_results[s][0] for s in sigmas], "o-", label="DP-SGD")
for e, s in zip(eps, sigmas):
    ax.annotate(f"σ={s}", (e, 100 * dp_results[s][0]), textcoords="offset points", xytext=(4, -10), fontsize=8)
ax.axhline(100 * dp_results["not private"][0], color="grey", linestyle="--", label="not private")
ax.set(xscale="log", xlabel="ε (smaller = more private)", ylabel="test accuracy (%)", title="隐私与准确率的权衡")
ax.grid(alpha=0.3); ax.legend(fontsize=8)
plt.show()
"""))
A(("md", r"""
More noise buys a smaller ε (a stronger guarantee) and costs accuracy; clipping alone (σ = 0) costs little
and gives no guarantee at all (ε is infinite). At these sizes, a useful classifier with a single-digit ε is
within reach; the price grows for small datasets, because the noise σC is divided by the batch size, not by
the dataset size (exercise 11.6).

## 2 · Bias (数据偏差) and social responsibility

A sentiment classifier should not change its verdict when "he" becomes "she". We train a bag-of-words
logistic regression on the shipped Rotten Tomatoes reviews (chapter 07b's task and its yardstick), then feed
it **counterfactual pairs**: each validation or test review that mentions a gendered word, rewritten once
with every gendered word male and once female. The gap is the mean difference in P(positive), with a 95 %
interval from the paired differences.
"""))
A(("code", r"""
PAIRS = [("he", "she"), ("him", "her"), ("his", "her"), ("himself", "herself"), ("man", "woman"), ("men", "women"),
         ("boy", "girl"), ("boys", "girls"), ("father", "mother"), ("son", "daughter"), ("brother", "sister"),
         ("husband", "wife"), ("king", "queen"), ("guy", "gal"), ("mr", "mrs"), ("actor", "actress")]
TO_MALE = {f: m for m, f in PAIRS} | {m: m for m, _ in PAIRS}
TO_FEMALE = {m: f for m, f in PAIRS} | {f: f for _, f in PAIRS}
GENDERED = re.compile(r"\b(" + "|".join(sorted(TO_MALE, key=len, reverse=True)) + r")\b")

def words(text):
    return re.findall(r"[a-z']+", text.lower())

def rewrite(text, mapping):
    return GENDERED.sub(lambda m: mapping[m.group(1)], text.lower())

train_texts, train_labels = load_reviews("rotten_tomatoes", "train")
held_out = sum((load_reviews("rotten_tomatoes", s)[0] for s in ("val", "test")), [])
test_texts, test_labels = load_reviews("rotten_tomatoes", "test")
counts = {}
for text in train_texts:
    for w in set(words(text)):
        counts[w] = counts.get(w, 0) + 1
VOCAB = {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= 2))}

def bag(texts):
    x = torch.zeros(len(texts), len(VOCAB))
    for row, text in enumerate(texts):
        for w in words(text):
            if w in VOCAB:
                x[row, VOCAB[w]] = 1.0
    return x

def train_bow(texts, labels, epochs=30):
    labkit.seed_everything(0)
    model = nn.Linear(len(VOCAB), 2)
    labkit.fit(model, TensorDataset(bag(texts), torch.tensor(labels)), epochs=epochs, lr=3e-3, batch_size=256,
               weight_decay=1e-4, optimizer="adamw", seed=0, verbose=False)
    return model.eval()
"""))
A(("code", r"""
pairs = [t for t in held_out if GENDERED.search(t.lower())]
male_x, female_x = bag([rewrite(t, TO_MALE) for t in pairs]), bag([rewrite(t, TO_FEMALE) for t in pairs])

def gender_gap(model):
    '''Mean P(positive | female version) − P(positive | male version), its 95 % interval, and flips.'''
    with torch.no_grad():
        p_m, p_f = (model(x).softmax(1)[:, 1] for x in (male_x, female_x))
    diff = p_f - p_m
    half = 1.96 * diff.std().item() / len(diff) ** 0.5
    flips = int(((p_m > 0.5) != (p_f > 0.5)).sum())
    return diff.mean().item(), half, flips

def test_accuracy(model):
    with torch.no_grad():
        return (model(bag(test_texts)).argmax(1) == torch.tensor(test_labels)).float().mean().item()

bow = train_bow(train_texts, train_labels)
gap, half, flips = gender_gap(bow)
low, high = accuracy_interval(flips, len(pairs))
print(f"{len(pairs)} held-out reviews mention a gendered word; test accuracy {test_accuracy(bow):.2%}")
print(f"gap P(pos | she-version) − P(pos | he-version): {gap:+.4f} ± {half:.4f} (95 %)")
print(f"verdicts that flip with the gender: {flips} of {len(pairs)} ({flips / len(pairs):.1%}, "
      f"95 % interval {low:.1%} – {high:.1%})")
weights = bow.weight[1] - bow.weight[0]                   # how much each word pushes towards "positive"
for m, f in PAIRS[:8]:
    if m in VOCAB and f in VOCAB:
        print(f"  {m:>8} {weights[VOCAB[m]]:+.3f}   {f:<8} {weights[VOCAB[f]]:+.3f}")
"""))
A(("md", r"""
**One mitigation: counterfactual data augmentation** (CDA; Lu et al. 2018, arXiv:1807.11714). For each
training review with a gendered word, add its gender-swapped copy with the same label. The classifier then
sees each sentence with both genders and has no reason to weigh "he" and "she" differently.
"""))
A(("code", r"""
SWAP = {m: f for m, f in PAIRS} | {f: m for m, f in PAIRS}
SWAP["her"] = "his"                                       # "her" is ambiguous (him / his): one choice
extra = [(GENDERED.sub(lambda m: SWAP[m.group(1)], t.lower()), y)
         for t, y in zip(train_texts, train_labels) if GENDERED.search(t.lower())]
cda = train_bow(train_texts + [t for t, _ in extra], train_labels + [y for _, y in extra])
gap_cda, half_cda, flips_cda = gender_gap(cda)
print(f"{len(extra)} swapped copies added to {len(train_texts)} training reviews")
print(f"{'':>14} {'test accuracy':>14} {'gap (she − he)':>22} {'flips':>6}")
print(f"{'original':>14} {test_accuracy(bow):>14.2%} {gap:>+14.4f} ± {half:.4f} {flips:>6}")
print(f"{'augmented':>14} {test_accuracy(cda):>14.2%} {gap_cda:>+14.4f} ± {half_cda:.4f} {flips_cda:>6}")
print(f"the original gap's 95 % interval {'includes' if abs(gap) < half else 'excludes'} zero; "
      f"after augmentation it {'includes' if abs(gap_cda) < half_cda else 'excludes'} zero")
"""))
A(("md", r"""
Read the numbers with their intervals. A gap whose interval contains zero is not evidence of a bias in this
sample; a few flipped verdicts among hundreds can still matter to the people they are about. CDA removes
the model's *reason* for a gap (the two words now appear in the same contexts), at little or no cost in
accuracy. It does not remove every bias: names, professions and topics carry gender too, and a bigger
model learns subtler associations. Responsibility (社会责任) starts with measuring, on the model you ship.

## 3 · Interpretability (模型解释性)

### 3.1 Attention maps of the course GPT

Which earlier characters does each head look at? We run chapter 06b's Shakespeare GPT on a real line and
compute every layer's attention weights by hand: the block's LayerNorm, the query and key projections,
softmax(q kᵀ / √d) with the future masked, exactly as `labkit.gpt.CausalSelfAttention` does.
"""))
A(("code", r"""
gpt, char_tokenizer, _ = labkit.load_pretrained("shakespeare_char")
SENTENCE = "ROMEO:\nBut soft, what light through yonder window breaks?"
ids = torch.tensor([char_tokenizer.encode(SENTENCE)])                 # (1, T)

def attention_maps(model, ids):
    '''(n_layer, n_head, T, T): each layer's attention weights, computed by hand; and each layer's
    attention output rebuilt from them, beside the model's own, to prove the weights are the model's.'''
    maps, mine, theirs = [], [], []
    with torch.no_grad():
        x = model.transformer.wte(ids) + model.transformer.wpe(torch.arange(ids.shape[1]))
        for block in model.transformer.h:
            attn, T, C = block.attn, ids.shape[1], x.shape[-1]
            q, k, v = (t.view(1, T, attn.n_head, C // attn.n_head).transpose(1, 2)
                       for t in attn.c_attn(block.ln_1(x)).split(C, dim=2))
            scores = (q @ k.transpose(-2, -1)) / (C // attn.n_head) ** 0.5
            weights = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
            maps.append(weights[0])
            mine.append(attn.c_proj((weights @ v).transpose(1, 2).reshape(1, T, C)))
            theirs.append(attn(block.ln_1(x)))
            x = block(x)                                               # on to the next layer
    return torch.stack(maps), torch.cat(mine), torch.cat(theirs)

maps, mine, theirs = attention_maps(gpt, ids)
compare("attention outputs: from our weights vs the model's layers", mine, theirs, atol=1e-5)
labels = [c if c != "\n" else "⏎" for c in SENTENCE]

def draw_attention(ax, layer, head):
    ax.imshow(maps[layer, head].numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, fontsize=6)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set(xlabel="key (attended to)", ylabel="query (attending)", title=f"第 {layer} 层 · 第 {head} 个头")
""", SETUP))
A(("code", r"""
# NBVAL_IGNORE_OUTPUT
def show_attention(layer, head):
    fig, ax = plt.subplots(figsize=(6.5, 6.5), layout="constrained")
    draw_attention(ax, layer, head)
    plt.show()

widgets.interact(show_attention,
                 layer=widgets.IntSlider(value=0, min=0, max=gpt.config.n_layer - 1, description="layer",
                                         continuous_update=False),
                 head=widgets.IntSlider(value=0, min=0, max=gpt.config.n_head - 1, description="head",
                                        continuous_update=False));
""", {"tags": ["browser-test"]}))
A(("code", r"""
previous = torch.stack([maps[l, h].diagonal(-1).mean() for l in range(maps.shape[0]) for h in range(maps.shape[1])])
self_attention = torch.stack([maps[l, h].diagonal().mean() for l in range(maps.shape[0]) for h in range(maps.shape[1])])
best = int(previous.argmax())
print(f"the head that most looks one character back: layer {best // maps.shape[1]}, head {best % maps.shape[1]} "
      f"({previous[best]:.0%} of its attention on the previous character)")
print(f"mean attention on the previous character over all heads: {previous.mean():.0%}; on itself: {self_attention.mean():.0%}")
"""))
A(("md", r"""
Move the sliders. Some heads attend to the previous character or two (local patterns: spelling); others
spread over the line or jump to the start, the newline or the last space (where a word began). An attention
map shows where information *can* flow, not what the model does with it: for that we need probes.

### 3.2 What does a layer know? Linear probes against a control

A **probe** is a linear classifier trained on a layer's hidden states to read off a property. We ask: *is
the next character a space or a line break* (does the model know a word is ending?). The control is the
same probe on the same architecture with random, untrained weights (Hewitt & Liang 2019 argue for such
controls: a probe can be clever on its own), and the baseline is always guessing the majority answer.
"""))
A(("code", r"""
val_text = load_text("shakespeare", "val")
starts = torch.arange(0, 40 * 256, 256)                                # 40 windows of 256 characters
windows = torch.tensor([char_tokenizer.encode(val_text[s:s + 257]) for s in starts.tolist()])
inputs, nxt = windows[:, :-1], windows[:, 1:]
boundary = torch.tensor([[char_tokenizer.decode([i]) in " \n" for i in row] for row in nxt.tolist()]).flatten()

def layer_states(model):
    '''[(40·256, C) per layer]: the embedding and each block's output.'''
    with torch.no_grad():
        x = model.transformer.wte(inputs) + model.transformer.wpe(torch.arange(inputs.shape[1]))
        states = [x.flatten(0, 1)]
        for block in model.transformer.h:
            x = block(x)
            states.append(x.flatten(0, 1))
    return states

def probe_accuracy(features, target, train_part=0.7):
    n = int(train_part * len(target))
    mean, std = features[:n].mean(0), features[:n].std(0) + 1e-6
    f = (features - mean) / std
    probe = nn.Linear(f.shape[1], 2)
    optimizer = torch.optim.Adam(probe.parameters(), lr=0.05)
    for _ in range(150):                                               # full-batch logistic regression
        optimizer.zero_grad()
        nn.functional.cross_entropy(probe(f[:n]), target[:n].long()).backward()
        optimizer.step()
    with torch.no_grad():
        return (probe(f[n:]).argmax(1) == target[n:].long()).float().mean().item()
"""))
A(("code", r"""
labkit.seed_everything(0)
untrained = GPT(gpt.config).eval()
majority = max(boundary[int(0.7 * len(boundary)):].float().mean().item(), 1 - boundary[int(0.7 * len(boundary)):].float().mean().item())
probe_results = {}
for name, model in (("trained GPT", gpt), ("random weights (control)", untrained)):
    labkit.seed_everything(0)
    probe_results[name] = [probe_accuracy(s, boundary) for s in layer_states(model)]
    print(f"{name:>25}: " + "  ".join(f"L{i} {a:.1%}" for i, a in enumerate(probe_results[name])))
print(f"{'majority baseline':>25}: {majority:.1%}")
fig, ax = plt.subplots(figsize=(6.5, 3.2), layout="constrained")
for name, accs in probe_results.items():
    ax.plot(range(len(accs)), [100 * a for a in accs], "o-", label=name)
ax.axhline(100 * majority, color="grey", linestyle="--", label="majority")
ax.set(xlabel="layer (0 = embeddings)", ylabel="probe accuracy (%)", title="线性探针：下一个字符是否为空格或换行")
ax.grid(alpha=0.3); ax.legend(fontsize=8)
plt.show()
assert max(probe_results["trained GPT"]) > max(probe_results["random weights (control)"])
"""))
A(("md", r"""
The embedding layer knows only the current character, so both models' probes start from what that alone
tells (after "d" a space is likelier than after "q"). The trained model's deeper layers make the next
boundary far more readable, the control's do not: the information was built by training, not by the probe.

### 3.3 Saliency on chapter 05's CNN

For an image classifier, the **saliency** of a pixel is how much the predicted class's logit changes when
the pixel does: the gradient of the logit with respect to the input (Simonyan et al. 2013). A check that the
map means something: blank the 3 % most salient pixels and, separately, 3 % chosen at random, and compare
how much the logit drops.
"""))
A(("code", r"""
images = x_train.view(-1, 1, 28, 28)
cnn = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                    nn.Linear(32 * 13 * 13, 128), nn.ReLU(), nn.Linear(128, 10))          # chapter 05's CNN
labkit.fit(cnn, TensorDataset(images, y_train), epochs=1, lr=2e-3, batch_size=64, seed=0, verbose=False)
cnn.eval()
test_images = x_test[:200].view(-1, 1, 28, 28).clone().requires_grad_(True)
logits = cnn(test_images)
predicted = logits.argmax(1)
logits.gather(1, predicted[:, None]).sum().backward()
saliency = test_images.grad.abs().detach()                                           # (200, 1, 28, 28)

def logit_after_blanking(mask):
    with torch.no_grad():
        return cnn(test_images.detach() * (1 - mask)).gather(1, predicted[:, None]).squeeze(1)

k = round(0.03 * 28 * 28)
top = torch.zeros_like(saliency).flatten(1).scatter_(1, saliency.flatten(1).topk(k, dim=1).indices, 1.0).view_as(saliency)
generator = torch.Generator().manual_seed(0)
random_mask = torch.zeros_like(top).flatten(1).scatter_(1, torch.rand(200, 784, generator=generator).topk(k, dim=1).indices, 1.0).view_as(top)
before = logits.gather(1, predicted[:, None]).squeeze(1).detach()
drop_salient = (before - logit_after_blanking(top)).mean().item()
drop_random = (before - logit_after_blanking(random_mask)).mean().item()
print(f"test accuracy {(predicted == y_test[:200]).float().mean():.1%}; blanking {k} pixels: the most salient drop the "
      f"logit by {drop_salient:.2f}, random ones by {drop_random:.2f}")
assert drop_salient > drop_random
"""))
A(("code", r"""
fig, axes = plt.subplots(2, 6, figsize=(10, 3.8), layout="constrained")
for column in range(6):
    axes[0, column].imshow(test_images[column, 0].detach(), cmap="gray")
    axes[0, column].set_title(f"预测 {predicted[column].item()}")
    axes[1, column].imshow(saliency[column, 0], cmap="hot")
    axes[1, column].set_title("显著性")
for ax in axes.flat:
    ax.axis("off")
plt.show()
"""))
A(("md", r"""
The saliency sits on the strokes and on the places where a stroke would turn the digit into another one
(the gap that tells a 9 from a 4). Gradients are local: they say what a tiny change would do, not what the
model "looks at"; the blanking test is what turns the picture into a number.

## Summary

- **Privacy.** A canary planted in training text rose from chance rank to near the top as its copies grew
  (exposure in bits, as in "The Secret Sharer"), and sampling the prefix can return it. DP-SGD, built by
  hand from per-example gradients (vmap, equal to a loop), clipping (each row to norm ≤ C) and Gaussian
  noise σC, trades accuracy for a guarantee ε computed by the RDP accountant (equal to Opacus's).
- **Bias.** Counterfactual pairs measure a classifier's gender gap with an interval; counterfactual data
  augmentation removes the words' different weights at little cost. Small gaps need intervals to be read.
- **Interpretability.** Attention maps show where information can flow; a linear probe against a
  random-weights control shows what a layer has learnt; saliency with a blanking test shows which pixels
  matter to a CNN's decision.
"""))
A(("md", r"""
## 中文小结

文章在“未来发展趋势与挑战”中提到数据安全与隐私保护、数据偏差与社会责任、模型解释性。本节把每一项变成测量。
隐私：在训练文本中植入“金丝雀”（my PIN is 7351），训练后按对数似然对全部 10000 个候选密码排序，暴露度 = log₂(候选数) − log₂(排名)；插入次数越多，排名越靠前，采样也可能直接吐出密码。
差分隐私 SGD：逐样本梯度（vmap，与循环一致）、逐样本裁剪到范数 ≤ C、加高斯噪声 σC，再按批大小平均；噪声越大 ε 越小（更私密）、准确率越低；ε 由 RDP 会计计算，与 Opacus 一致。
偏差：用反事实句对（他/她等词互换）测情感分类器的性别差距并给出置信区间；反事实数据增强使差距缩小，准确率几乎不变；差距很小时必须看区间。
可解释性：注意力图显示信息可以在哪里流动；线性探针与随机权重对照显示某一层学到了什么；CNN 的显著性图配合遮挡测试说明哪些像素真正影响判断。
"""))
A(("md", r"""
## Exercises

`summary("11b")` lists this notebook's exercises; each `check` below marks one done.

**11.4 The exposure of a canary.** Write `my_exposure(canary_score, candidate_scores)`: log₂ of the number
of candidates minus log₂ of the canary's rank, where rank 1 is the highest log-likelihood and candidates tied
with the canary do not push it down. Without `labkit.privacy`.
"""))
A(("code", r"""
def my_exposure(canary_score, candidate_scores):
    raise NotImplementedError  # TODO: log2(number of candidates) − log2(rank of the canary)

check("11.4", my_exposure)
""" if not SOLUTIONS else r"""
def my_exposure(canary_score, candidate_scores):
    scores = torch.as_tensor(candidate_scores)
    rank = 1 + int((scores > canary_score).sum())
    return float(np.log2(len(scores)) - np.log2(rank))

check("11.4", my_exposure)
"""))
A(("md", r"""
**11.5 Per-example clipping.** Write `my_clip(grads, max_norm)`: for per-example gradients (B, P), scale
each row to norm ≤ max_norm, leaving shorter rows unchanged. How does this differ from
`torch.nn.utils.clip_grad_norm_`, and why would that one not bound a single example's influence?
"""))
A(("code", r"""
def my_clip(grads, max_norm):
    raise NotImplementedError  # TODO: each row of grads (B, P) scaled to norm ≤ max_norm

check("11.5", my_clip)
""" if not SOLUTIONS else r"""
def my_clip(grads, max_norm):
    norms = grads.norm(dim=1, keepdim=True)
    return grads * torch.clamp(max_norm / (norms + 1e-12), max=1.0)

check("11.5", my_clip)
"""))
A(("md", r"""
**11.6 Predict, measure, explain: DP noise and the batch size.** DP-SGD adds noise N(0, (σC)²) and then
averages over the batch. If the batch grows from 64 to 256 examples (σ = 1, C = 1), by what factor does the
standard deviation of the noise on the *mean* gradient shrink?
(a) about 1; (b) about 2; (c) about 4. Commit to a prediction, run the measurement, then explain.
"""))
A(("code", r"""
prediction = ...  # TODO: "a", "b" or "c": decide BEFORE you run the next cell
""" if not SOLUTIONS else r"""
prediction = "c"  # the noise is added once to the sum, then divided by B
"""))
A(("code", r"""
committed = prediction          # what you predicted, kept before the measurement
from labkit.checks.ch11b import noise_ratio
print(f"noise std at batch 64 / noise std at batch 256: {noise_ratio(64, 256):.3f}")
"""))
A(("code", r"""
measured = ...     # TODO: the ratio the measurement cell printed
explanation = ...  # TODO: "a", "b" or "c"
# (a) the noise is added to each example's gradient, so it averages out like the examples do
# (b) the noise is added once to the sum of the clipped gradients; the mean divides it by B: std σC / B
# (c) a larger batch takes fewer steps per epoch, so less noise is added per epoch
check("11.6", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))
""" if not SOLUTIONS else r"""
measured = noise_ratio(64, 256)
explanation = "b"
# (a) the noise is added to each example's gradient, so it averages out like the examples do
# (b) the noise is added once to the sum of the clipped gradients; the mean divides it by B: std σC / B
# (c) a larger batch takes fewer steps per epoch, so less noise is added per epoch
check("11.6", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))
"""))
A(("code", r"""
summary("11b")
""" if not SOLUTIONS else r"""
result = summary("11b")
assert result.all_passed, "every exercise of 11b should pass in the solutions"
"""))

name = "11b_privacy_bias_interpretability"
build(cells, f"{pathlib.Path(__file__).resolve().parent.parent}/{name}{'_solutions' if SOLUTIONS else ''}.ipynb")
print("built", len(cells), "cells")
