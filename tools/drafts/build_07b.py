"""Builds chapters/07b_classification_and_lora.ipynb and its solutions notebook."""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NAME = "07b_classification_and_lora"
cells = []


def md(text):
    cells.append(new_markdown_cell(text.strip("\n")))


def code(text, tags=None):
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    cells.append(cell)


md(r"""
# 07b · Project practice III, part 2: fine-tuning the GPT as a classifier, and LoRA (分类微调与 LoRA)

In 07a a CNN trained on clothes was reused for digits. Now the pretrained model is the GPT of chapter 06:
`base_bpe`, a 6-layer GPT that read about 12 million tokens of English and Chinese (Shakespeare,
Moby-Dick, Tang poems and the texts of the reviews below, without their labels) and learned one thing:
to predict the next token. The new task is **sentiment classification** (情感分类): is a film review
positive or negative (English, Rotten Tomatoes), is a hotel, laptop or book review 正面 or 负面 (Chinese)?

The articles' FAQ asks 如何进行模型微调 (how is a model fine-tuned?) and answers: "模型微调是在训练好的模型基础上
进行调整的过程，以适应特定任务的需求。需要选择合适的优化算法和学习率等超参数，并进行训练" (start from the trained
model, adjust it to the task: choose an optimizer and a learning rate, and train). There is more than one
way to "adjust", and they cost very different amounts. This notebook builds each one and measures them on
the same labelled data:

1. **head only** (只训练分类头): the GPT is frozen; a new linear layer reads its last hidden state;
2. **full fine-tuning** (全量微调): every weight of the GPT trains, with the new head;
3. **LoRA** (低秩适配, Hu et al. 2021): the GPT is frozen, and small low-rank matrices added beside its
   linear layers train, with the head; built here from scratch;
4. **from scratch**: the same architecture with random weights, trained on the same labels: what the
   pretraining is worth.

For each: accuracy on the test reviews, trainable parameters, training time and training memory, in one table.
""")

code(r"""
import copy
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from ipywidgets import interact, widgets
from torch import nn
from torch.utils.data import TensorDataset

import labkit
from labkit.data import class_names, load_reviews
from labkit.exercises import check, summary
from labkit.finetune import (GPTClassifier, LoRALinear, apply_lora, encode_batch, freeze, load_adapters,
                             merge_lora, parameter_counts, save_adapters, trainable_summary, training_memory, unfreeze)

FULL_RUN = False  # True: fine-tune on every labelled review (10 204 English, 12 000 Chinese), not 2 000 (5 times longer)

labkit.seed_everything(0)  # the same numbers on every run (exactly, on the CPU)
print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {labkit.get_device()}")
""")

md(r"""
## 1 · The pretrained model and the data

`labkit.load_pretrained` loads one of the checkpoints the course ships (trained by
`tools/train_checkpoints.py`, whose command, loss curve and final validation loss sit beside the weights in
`checkpoints/base_bpe/`). Its tokenizer is the byte-level BPE of chapter 06, trained on the same English
and Chinese text, with 4 096 tokens.
""")

code(r"""
base, tokenizer, meta = labkit.load_pretrained("base_bpe")
PAD = tokenizer.special_tokens["<|endoftext|>"]   # pads rows on the right; it never occurs inside a review
print(f"{meta['parameters']:,} parameters, {base.config.n_layer} layers × {base.config.n_embd} wide, vocab "
      f"{tokenizer.vocab_size}; pretrained {meta['steps']:,} steps × {meta['tokens_per_step']:,} tokens, "
      f"validation loss {meta['final_val_loss']:.2f}")

torch.manual_seed(0)
for prompt in ["This movie is", "这家酒店"]:
    ids = torch.tensor([tokenizer.encode(prompt)])
    out = base.generate(ids, 30, temperature=0.8, top_k=50)
    print(repr(tokenizer.decode(out[0].tolist())))
""")

md(r"""
It writes text in the style of what it read, in both languages: it has learned something about words,
syntax and which words go together. Nobody told it what a positive review is. The labelled data:
""")

code(r"""
LANGUAGES = {"English": "rotten_tomatoes", "Chinese": "chinese_reviews"}
reviews = {lang: {split: load_reviews(name, split) for split in ("train", "val", "test")}
           for lang, name in LANGUAGES.items()}
for lang, name in LANGUAGES.items():
    texts, labels = reviews[lang]["train"]
    lengths = torch.tensor([len(tokenizer.encode(t)) for t in texts[:2000]]).float()
    print(f"{lang}: {len(texts):,} train / {len(reviews[lang]['val'][0]):,} val / {len(reviews[lang]['test'][0]):,} "
          f"test reviews, {sum(labels) / len(labels):.0%} {class_names(name)[1]}, "
          f"{lengths.mean():.0f} tokens on average (longest of 2 000: {lengths.max():.0f})")
    for i in (0, -1):
        print(f"   [{class_names(name)[labels[i]]}] {texts[i][:100]}")
""")

md(r"""
## 2 · From the next token to a label, by hand

The GPT turns token ids (B, T) into hidden states (B, T, C), one vector of C = 256 numbers per position,
and its LM head turns each of them into scores for the next token. For a label we need one vector per
*review*. Attention is causal: the hidden state at position t has read tokens 0 … t and nothing after.
So the **last real token** of a review is the only position that has read the whole review, and that is
where a classifier reads (last-token pooling, as in GPT-1's classification fine-tuning and in
`GPT2ForSequenceClassification`). A new linear layer, the **head**, maps its C numbers to 2 scores.

Reviews have different lengths, so a batch is padded on the right with `PAD`. Causal attention never
looks right, so padding after a review cannot change its hidden states: we check that too.
""")

code(r"""
texts = ["A quiet, moving film.", "Two hours of my life I will never get back, and the popcorn was stale."]
idx = encode_batch(tokenizer, texts, block_size=256, pad_id=PAD)      # (2, T), right-padded with PAD
lengths = (idx != PAD).sum(dim=1)                                     # real tokens per row
with torch.no_grad():
    hidden = base.hidden_states(idx)                                  # (2, T, 256)
pooled = hidden[torch.arange(len(idx)), lengths - 1]                  # (2, 256): each row's last real token
torch.manual_seed(0)
head = nn.Linear(base.config.n_embd, 2)                               # the new head: 256 → 2 scores
logits = head(pooled)                                                 # (2, 2)
print(f"idx {tuple(idx.shape)}, real tokens per row {lengths.tolist()}, hidden {tuple(hidden.shape)}, "
      f"pooled {tuple(pooled.shape)}, logits {tuple(logits.shape)}")

with torch.no_grad():   # the short review alone, without padding, has the same last hidden state
    alone = base.hidden_states(idx[:1, : lengths[0]])[0, -1]
print(f"padding changes the short review's pooled vector by {(alone - pooled[0]).abs().max():.1e}")
assert torch.allclose(alone, pooled[0], atol=1e-5)

classifier = GPTClassifier(base, num_classes=2, pad_id=PAD, pooling="last")
classifier.head.load_state_dict(head.state_dict())                   # the same head weights
with torch.no_grad():
    assert torch.allclose(classifier(idx), logits, atol=1e-5)
print("labkit.finetune.GPTClassifier computes the same logits")
""")

md(r"""
Before any training the head is random, so these logits mean nothing yet. `GPTClassifier` (in
`labkit.finetune`) is this computation as a module: GPT body, last-token (or mean) pooling, head.
It also cuts columns that hold only padding before the GPT runs, so a batch costs what its longest review costs.

## 3 · LoRA by hand (低秩适配)

Full fine-tuning changes every weight matrix W of the GPT. LoRA's observation: the *change* ΔW that
fine-tuning needs has a low rank, so it can be written as a product of two thin matrices,
ΔW = B A with A of shape (r, in) and B of shape (out, r), r small (8 here). W stays frozen; only A and B
train. A layer then computes

$$y = W x + b + \frac{\alpha}{r}\, B A x .$$

B starts at **zero**, so at the start ΔW = 0 and the model is exactly the pretrained one; A starts random
(if both were zero, neither would ever get a gradient). The factor α/r keeps the size of the update
the same when you change r. We build it for the first attention layer's `c_attn` (256 → 768: query, key
and value together).
""")

code(r"""
layer = copy.deepcopy(base.transformer.h[0].attn.c_attn)       # nn.Linear(256, 768), pretrained (a copy: base stays as it is)
rank, alpha = 8, 16
torch.manual_seed(0)
A = (torch.randn(rank, layer.in_features) / layer.in_features ** 0.5).requires_grad_()  # (8, 256), random
B = torch.zeros(layer.out_features, rank, requires_grad=True)                          # (768, 8), zeros

def lora_forward(x):
    # x (..., 256) → (..., 768): the frozen layer plus the scaled low-rank update
    return layer(x) + (alpha / rank) * (x @ A.T @ B.T)

x = torch.randn(4, 10, layer.in_features)
with torch.no_grad():
    assert torch.equal(lora_forward(x), layer(x))             # B = 0: exactly the pretrained layer
full, low_rank = layer.weight.numel(), A.numel() + B.numel()
print(f"W has {full:,} numbers; A and B have {rank} × ({layer.in_features} + {layer.out_features}) = "
      f"{low_rank:,}, {low_rank / full:.1%} of W")

# After some training B is no longer zero: the update is a matrix of rank ≤ 8
with torch.no_grad():
    B.normal_(std=0.02)
delta = (alpha / rank) * B @ A                                # (768, 256), the change of W
print(f"rank of the update ΔW: {torch.linalg.matrix_rank(delta).item()} (a full change of W could have rank 256)")

lora = LoRALinear(layer, rank=rank, alpha=alpha)              # labkit's version, given the same A and B
with torch.no_grad():
    lora.lora_A.weight.copy_(A)
    lora.lora_B.weight.copy_(B)
    assert torch.allclose(lora(x), lora_forward(x), atol=1e-6)
    merged = lora.merged()                                    # W + (α/r) B A in one plain nn.Linear
    assert torch.allclose(merged(x), lora_forward(x), atol=1e-5)
print("labkit.finetune.LoRALinear computes the same, and merging it into W changes nothing")
""")

md(r"""
`apply_lora` wraps every linear layer whose name ends with one of `targets` and freezes everything
else. We adapt all four linear layers of each block: attention's `c_attn` and `c_proj`, the MLP's `c_fc`
and `c_proj`. The classifier's new head must train too, so we unfreeze it, and the LayerNorms' scales and
shifts (a few thousand numbers; letting them train is common with LoRA, and it helped a little in our
trials). LoRALinear wraps the layer it is given, so we work on copies of `base`, which stays as it was.
""")

code(r"""
LORA_TARGETS = ("c_attn", "c_proj", "c_fc")   # "c_proj" names both attention's and the MLP's output layer
LORA_ALSO_TRAINS = ["head", "gpt.transformer.h.*.ln_*", "gpt.transformer.ln_f"]  # the new head, the LayerNorms

def lora_classifier(rank, alpha=16, pooling="last"):
    model = GPTClassifier(copy.deepcopy(base), num_classes=2, pad_id=PAD, pooling=pooling)
    apply_lora(model, targets=LORA_TARGETS, rank=rank, alpha=alpha)  # wraps them, freezes everything else
    unfreeze(model, LORA_ALSO_TRAINS)
    return model

print(trainable_summary(lora_classifier(rank=8), depth=1))
""")

md(r"""
## 4 · Which vector should the head read? Measured, not assumed

Last-token pooling is the textbook choice, and the right one for a strong model: its last hidden state
summarises the text for predicting what comes next. Ours is small and read only 12 million tokens, and
the alternative is cheap to test: **mean pooling**, the average of the hidden states of the review's real
tokens (`GPTClassifier(..., pooling="mean")`). With the body frozen, a review's pooled vector never
changes, so we compute both kinds once for every review (one forward pass, no backward) and train a
head on each: a **linear probe** (线性探测) of what the pretrained features already know. The
**validation** reviews decide; the test reviews stay untouched until the final table.

The recipe for everything below: `N_TRAIN` labelled reviews per language (a random, seeded subset of
the training split), cut to their first `BLOCK` tokens, AdamW, batches of `BATCH`.
""")

code(r"""
N_TRAIN, EPOCHS, BATCH, BLOCK = (None if FULL_RUN else __N_TRAIN__), __EPOCHS__, 32, 32
LR = {"from scratch": __LR_SCRATCH__, "full": __LR_FULL__, "LoRA": __LR_LORA__, "head only": __LR_HEAD__}

def tensors(lang, split, n=None):
    texts, labels = reviews[lang][split]
    if n is not None:  # a random, seeded subset of n reviews
        keep = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))[:n].tolist()
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    return encode_batch(tokenizer, texts, BLOCK, PAD), torch.tensor(labels)   # (N, T), (N,)

data = {lang: {split: tensors(lang, split, N_TRAIN if split == "train" else None)
               for split in ("train", "val", "test")} for lang in LANGUAGES}

@torch.no_grad()
def pooled_features(idx, batch_size=256):
    # the frozen base model's pooled vectors of each text, both ways: {"last": (N, C), "mean": (N, C)}
    pooled = {"last": [], "mean": []}
    for start in range(0, len(idx), batch_size):
        rows = idx[start : start + batch_size]
        lengths = (rows != PAD).sum(dim=1)                                       # (B,)
        hidden = base.hidden_states(rows[:, : int(lengths.max())])               # (B, T, C)
        pooled["last"].append(hidden[torch.arange(len(rows)), lengths - 1])
        real = (torch.arange(hidden.shape[1]) < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
        pooled["mean"].append((hidden * real).sum(dim=1) / lengths[:, None])
    return {kind: torch.cat(parts) for kind, parts in pooled.items()}

def train_head(features, labels):
    torch.manual_seed(0)
    head = nn.Linear(features.shape[1], 2)
    labkit.fit(head, TensorDataset(features, labels), epochs=__HEAD_EPOCHS__, lr=LR["head only"], batch_size=BATCH,
               optimizer="adamw", seed=0, verbose=False)
    return head
""")

code(r"""
features = {(lang, split): pooled_features(data[lang][split][0]) for lang in LANGUAGES for split in ("train", "val", "test")}
probe = {}
for lang in LANGUAGES:
    for kind in ("last", "mean"):
        head = train_head(features[lang, "train"][kind], data[lang]["train"][1])
        with torch.no_grad():
            probe[lang, kind] = (head(features[lang, "val"][kind]).argmax(1) == data[lang]["val"][1]).float().mean().item()
    print(f"{lang}: linear probe on the validation reviews: last token {probe[lang, 'last']:.1%}, "
          f"mean {probe[lang, 'mean']:.1%}")
POOLING = max(("last", "mean"), key=lambda kind: sum(probe[lang, kind] for lang in LANGUAGES))
print(f"pooling for the rest of this notebook: {POOLING!r}")
""")

md(r"""
__PROBE_PROSE__

## 5 · Four ways to fine-tune, measured

Each method gets the learning rate that suits it (we tried a few on the validation reviews; these were
best or close to it):

- **head only**: the probe above, with the chosen pooling: only 514 numbers train;
- **full** and **from scratch**: every weight trains, for `EPOCHS` passes. Full fine-tuning uses a smaller
  learning rate than training from scratch, so that it adjusts the pretrained weights instead of overwriting them;
- **LoRA**: A and B start from zero change, so they need a larger learning rate to get anywhere in a
  few hundred steps.

The test reviews (1 274 English, 1 500 Chinese) decide the accuracy. Memory is measured by
`training_memory` on one batch of the longest training reviews: weights, gradients and Adam's two
states for what trains, plus the activations autograd keeps for the backward pass.
""")

code(r"""
METHODS = ["head only", "full", "LoRA r=8", "from scratch"]

@torch.no_grad()
def predictions(model, idx, batch_size=256):
    # class predictions (N,) for token ids (N, T); rows sorted by length, so batches carry little padding
    model.eval()
    order = (idx != PAD).sum(dim=1).argsort()
    preds = torch.empty(len(idx), dtype=torch.long)
    for start in range(0, len(idx), batch_size):
        rows = order[start : start + batch_size]
        preds[rows] = model(idx[rows]).argmax(dim=1)
    return preds

def make_model(method):
    if method.startswith("LoRA"):
        return lora_classifier(rank=int(method.split("=")[1]), pooling=POOLING)
    torch.manual_seed(0)
    gpt = labkit.GPT(base.config) if method == "from scratch" else copy.deepcopy(base)  # random or pretrained
    model = GPTClassifier(gpt, num_classes=2, pad_id=PAD, pooling=POOLING)
    if method == "head only":
        freeze(model, "gpt")
    return model

def train_and_test(method, lang):
    (x, y), (test_x, test_y) = data[lang]["train"], data[lang]["test"]
    torch.manual_seed(0)
    model = make_model(method)
    longest = x[(x != PAD).sum(dim=1).argsort()[-BATCH:]]
    memory = training_memory(model, longest, y[:BATCH])["total"]
    start = time.perf_counter()
    if method == "head only":   # the body never changes: pool once (timed again here), then train the head alone
        model.head = train_head(pooled_features(x)[POOLING], y)
    else:
        lr = LR["LoRA"] if method.startswith("LoRA") else LR[method]
        labkit.fit(model, TensorDataset(x, y), epochs=EPOCHS, lr=lr, batch_size=BATCH, optimizer="adamw",
                   seed=0, verbose=False)
    seconds = time.perf_counter() - start
    preds = predictions(model, test_x)
    return dict(model=model, accuracy=(preds == test_y).float().mean().item(), preds=preds,
                seconds=seconds, memory=memory, **parameter_counts(model))
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
results = {}
start = time.perf_counter()
for lang in LANGUAGES:
    for method in METHODS:
        results[lang, method] = train_and_test(method, lang)
        r = results[lang, method]
        print(f"{lang:<8} {method:<13} test accuracy {r['accuracy']:.1%}   {r['seconds']:5.1f} s")
print(f"all {len(results)} runs: {time.perf_counter() - start:.0f} s")
""")

code(r"""
def table(lang):
    print(f"{lang} ({len(data[lang]['train'][1]):,} labelled reviews, {EPOCHS} epochs; "
          f"majority class {max(data[lang]['test'][1].float().mean().item(), 1 - data[lang]['test'][1].float().mean().item()):.1%})")
    print(f"  {'method':<13}{'accuracy':>9}{'trainable':>12}{'share':>8}{'time':>8}{'memory':>10}")
    for method in METHODS:
        r = results[lang, method]
        print(f"  {method:<13}{r['accuracy']:>9.1%}{r['trainable']:>12,}{r['trainable'] / r['total']:>8.2%}"
              f"{r['seconds']:>7.1f}s{r['memory'] / 2**20:>7.0f} MiB")

for lang in LANGUAGES:
    table(lang)
""")

md(r"""
__TABLE_PROSE__
""")

code(r"""
for lang in LANGUAGES:
    acc = {method: results[lang, method]["accuracy"] for method in METHODS}
    gain = acc["full"] - acc["from scratch"]
    print(f"{lang}: full fine-tuning of the pretrained model vs from scratch: {100 * gain:+.1f} points; "
          f"LoRA r=8 is {100 * (acc['LoRA r=8'] - acc['full']):+.1f} points from full fine-tuning "
          f"with {results[lang, 'LoRA r=8']['trainable'] / results[lang, 'LoRA r=8']['total']:.1%} of the parameters")
    assert acc["full"] >= acc["head only"] + __MARGIN__, f"{lang}: full fine-tuning should beat head only by {100 * __MARGIN__:.0f} points"
    assert gain >= __GAIN__, f"{lang}: fine-tuning the pretrained model should beat training from scratch by {100 * __GAIN__:.0f} points"
    assert acc["full"] - acc["LoRA r=8"] <= 0.02, f"{lang}: LoRA r=8 should come within 2 points of full fine-tuning"
    assert acc["LoRA r=8"] > acc["head only"] + 0.01, f"{lang}: LoRA should beat training the head alone"
    assert results[lang, "LoRA r=8"]["trainable"] < 0.05 * results[lang, "LoRA r=8"]["total"]
""")

md(r"""
## 6 · What goes wrong: confusion matrices

Accuracy is one number; a confusion matrix (混淆矩阵) shows which way the mistakes go. Rows are the true
labels, columns the predicted ones, for the LoRA model of each language.
""")

code(r"""
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
for ax, (lang, name) in zip(axes, LANGUAGES.items()):
    r = results[lang, "LoRA r=8"]
    cm = labkit.confusion_matrix(data[lang]["test"][1], r["preds"], num_classes=2)   # (2, 2) counts
    labkit.plot_confusion_matrix(cm, class_names=class_names(name), ax=ax,
                                 title=f"{lang}, LoRA r=8: {r['accuracy']:.1%}")
plt.show()

for lang, name in LANGUAGES.items():
    texts, labels = reviews[lang]["test"]
    preds = results[lang, "LoRA r=8"]["preds"].tolist()
    wrong = [i for i in range(len(texts)) if preds[i] != labels[i]][:2]
    for i in wrong:
        print(f"{lang}, true {class_names(name)[labels[i]]}, predicted {class_names(name)[preds[i]]}: {texts[i][:110]}")
""")

md(r"""
__CONFUSION_PROSE__

## 7 · LoRA's rank: try it

The rank r sets how many numbers LoRA trains: r · (in + out) per adapted layer, so doubling r doubles
them. Does accuracy follow? The slider picks r; each new rank trains one LoRA model with the recipe
above (about __LORA_SECONDS__ s), and the results are kept, so the bars fill in as you explore. The dashed
lines are full fine-tuning and head only.
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
rank_results = {(lang, 8): results[lang, "LoRA r=8"] for lang in LANGUAGES}

def explore_rank(rank=4, language="English"):
    if (language, rank) not in rank_results:
        rank_results[language, rank] = train_and_test(f"LoRA r={rank}", language)
    ranks = sorted(r for lang, r in rank_results if lang == language)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    accs = [rank_results[language, r]["accuracy"] for r in ranks]
    colours = ["tab:red" if r == rank else "tab:blue" for r in ranks]
    ax1.bar([str(r) for r in ranks], accs, color=colours)
    for method, style in (("full", "--"), ("head only", ":")):
        ax1.axhline(results[language, method]["accuracy"], color="black", linestyle=style, label=method)
    low = min(accs + [results[language, "head only"]["accuracy"]])
    ax1.set(ylim=(low - 0.03, max(accs + [results[language, "full"]["accuracy"]]) + 0.02),
            xlabel="LoRA rank r", ylabel="test accuracy", title=f"{language}: accuracy")
    ax1.legend(loc="lower right")
    trainable = [rank_results[language, r]["trainable"] for r in ranks]
    ax2.bar([str(r) for r in ranks], trainable, color=colours)
    ax2.set(xlabel="LoRA rank r", ylabel="trainable parameters",
            title=f"r = {rank}: {rank_results[language, rank]['trainable']:,} of "
                  f"{rank_results[language, rank]['total']:,} train")
    plt.show()

interact(explore_rank,
         rank=widgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32, 64], value=4, description="rank r"),
         language=widgets.Dropdown(options=list(LANGUAGES), value="English", description="language"));
""", tags=["browser-test"])

md(r"""
Things to try: at which rank does accuracy stop improving? Is rank 1 (a single direction per layer)
already useful? Does Chinese need a larger rank than English?

## 8 · Adapters are small: save, load, merge

A LoRA model is the shared base model plus what trained: A and B, the head and the LayerNorms. Only those
need saving: one base model can serve many tasks, each with its own small file.
""")

code(r"""
lora_model = results["English", "LoRA r=8"]["model"]
path = save_adapters(lora_model, Path(tempfile.gettempdir()) / "07b_english_lora.safetensors", extra=LORA_ALSO_TRAINS)
model_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
print(f"adapters + head: {path.stat().st_size / 1024:,.0f} KB; the whole model: {model_bytes / 2**20:.1f} MiB")

fresh = lora_classifier(rank=8, pooling=POOLING)  # the base model again, with new (untrained) adapters
load_adapters(fresh, path)
test_x, test_y = data["English"]["test"]
assert torch.equal(predictions(fresh, test_x), results["English", "LoRA r=8"]["preds"])
print("a fresh base model + the adapters file predicts exactly as the trained model")

merged_names = merge_lora(fresh)                 # W ← W + (α/r) B A in each adapted layer
with torch.no_grad():
    assert torch.allclose(fresh(test_x[:64]), lora_model.eval()(test_x[:64]), atol=1e-4)
print(f"merged {len(merged_names)} layers into plain nn.Linear layers: same outputs, no extra cost per token")
""")

md(r"""
## 9 · When to use which (your numbers)

The FAQ's answer was "choose an optimizer and a learning rate, and train". The table above says which
weights to train, too:
""")

code(r"""
for lang in LANGUAGES:
    r = {method: results[lang, method] for method in METHODS}
    fastest = min(METHODS, key=lambda m: r[m]["seconds"])
    print(f"{lang}: best {max(METHODS, key=lambda m: r[m]['accuracy'])}; "
          f"head only {r['head only']['accuracy']:.1%} in {r['head only']['seconds']:.1f} s (fastest: {fastest}); "
          f"LoRA {r['LoRA r=8']['accuracy']:.1%} training {r['LoRA r=8']['trainable']:,} parameters; "
          f"full {r['full']['accuracy']:.1%} training {r['full']['trainable']:,}; "
          f"scratch {r['from scratch']['accuracy']:.1%}")
""")

md(r"""
__WHEN_PROSE__

## Summary

- A GPT becomes a classifier by reading the hidden state of each text's last real token (the only one
  that has read the whole text) with a new linear head. Right padding does not change it; we checked.
- LoRA adds (α/r)·B A beside a frozen weight W: B starts at zero, so training starts from the pretrained
  model; r · (in + out) numbers per layer train; after training, B A folds into W (`merge_lora`) and costs
  nothing at inference.
- `labkit.finetune`: `GPTClassifier`, `LoRALinear`, `apply_lora`, `merge_lora`, `save_adapters` /
  `load_adapters`, `freeze` / `unfreeze`, `parameter_counts`, `training_memory`.
- Measured here: __SUMMARY_NUMBERS__

## Exercises

Each exercise has a stub cell: replace `raise NotImplementedError` with your code and run the cell; the
check below it says ✓ or ✗ with a hint. Worked answers are in `solutions/07b_classification_and_lora_solutions.ipynb`.

**07.4 Last-token pooling.** Write `last_token_pool(hidden, idx, pad_id)`: `hidden` (B, T, C) are hidden
states, `idx` (B, T) the token ids they came from, right-padded with `pad_id`. Return (B, C): for each row,
the hidden state of its last real (non-padding) token. Do not loop in Python if you can help it.
""")

code(r"""
def last_token_pool(hidden, idx, pad_id):
    raise NotImplementedError  # TODO: (B, T, C) hidden states → (B, C): each row's last real token

check("07.4", last_token_pool)
""")

md(r"""
**07.5 LoRA as a module.** Write the class `LoRA(base, rank, alpha)`, an `nn.Module` that wraps the
`nn.Linear` `base`: freeze it; keep two `nn.Parameter`s, `self.A` of shape (rank, in_features) with small
random values and `self.B` of shape (out_features, rank) with zeros; `forward(x)` returns
`base(x) + (alpha / rank) · x Aᵀ Bᵀ`. The check builds one, compares it with its base layer, gives B values
and compares again.
""")

code(r"""
class LoRA(nn.Module):
    def __init__(self, base, rank, alpha):
        super().__init__()
        raise NotImplementedError  # TODO: freeze base; A (rank, in) random, B (out, rank) zeros

    def forward(self, x):
        raise NotImplementedError  # TODO: base(x) + (alpha / rank) · x Aᵀ Bᵀ

check("07.5", LoRA)
""")

md(r"""
**07.6 Merge.** Write `merge(lora)`: given a trained `labkit.finetune.LoRALinear` (its parts:
`lora.base`, an `nn.Linear`; `lora.lora_A.weight` (r, in); `lora.lora_B.weight` (out, r); `lora.scaling` = α/r),
return a new `nn.Linear` that computes the same outputs, with weight W + (α/r)·B A and the base's bias.
Leave `lora` unchanged.
""")

code(r"""
def merge(lora):
    raise NotImplementedError  # TODO: one nn.Linear computing what the LoRALinear computes

check("07.6", merge)
""")

code(r"""
summary("07b")
""")

chapter_cells = cells
cells = []

# ------------------------------------------------------------------ solutions
md(r"""
# 07b · Solutions: fine-tuning the GPT as a classifier, and LoRA

Worked answers to the exercises of `chapters/07b_classification_and_lora.ipynb`. Each answer is followed by
its check; the last cell asserts that all of them pass.
""")

code(r"""
import torch
from torch import nn

import labkit
from labkit.exercises import check, summary
from labkit.finetune import GPTClassifier, LoRALinear, encode_batch

labkit.seed_everything(0)
""")

md(r"""
**07.4 Last-token pooling.** Real tokens come first and padding after, so a row's number of real tokens
is `(idx != pad_id).sum(dim=1)` and its last real token sits one before that. Indexing with two index
tensors, `hidden[rows, positions]`, picks one vector per row: no loop.
""")

code(r"""
def last_token_pool(hidden, idx, pad_id):
    lengths = (idx != pad_id).sum(dim=1)                       # (B,)
    return hidden[torch.arange(hidden.shape[0]), lengths - 1]  # (B, C)

check("07.4", last_token_pool)
""")

md(r"""
It agrees with `GPTClassifier`'s pooling on a small random GPT: the head applied to our pooled vectors
gives the classifier's logits.
""")

code(r"""
torch.manual_seed(0)
gpt = labkit.GPT(labkit.GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
classifier = GPTClassifier(gpt, num_classes=3, pad_id=0).eval()
idx = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
with torch.no_grad():
    mine = classifier.head(last_token_pool(gpt.hidden_states(idx), idx, pad_id=0))
    assert torch.allclose(mine, classifier(idx), atol=1e-6)
print(mine)
""")

md(r"""
**07.5 LoRA as a module.** `requires_grad_(False)` freezes the base layer (it is still registered as a
submodule, so it moves with `.to(device)` and is saved in the state dict). A is random, scaled by
1/√in so that A x starts at about the size of x; B is zero so the module starts equal to its base.
""")

code(r"""
class LoRA(nn.Module):
    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scaling = alpha / rank
        self.A = nn.Parameter(torch.randn(rank, base.in_features) / base.in_features ** 0.5)
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + self.scaling * (x @ self.A.T @ self.B.T)

check("07.5", LoRA)
""")

md(r"""
Trained for a few steps to map inputs to a new target, only A and B move:
""")

code(r"""
torch.manual_seed(0)
layer = LoRA(nn.Linear(8, 4), rank=2, alpha=4)
w_before = layer.base.weight.clone()
x, target = torch.randn(64, 8), torch.randn(64, 4)
optimizer = torch.optim.Adam([p for p in layer.parameters() if p.requires_grad], lr=1e-2)
for step in range(200):
    loss = ((layer(x) - target) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"loss {loss.item():.3f}; base weight unchanged: {torch.equal(layer.base.weight, w_before)}; "
      f"|B| = {layer.B.norm():.2f}")
assert torch.equal(layer.base.weight, w_before) and layer.B.norm() > 0
""")

md(r"""
**07.6 Merge.** The update is a matrix of the same shape as W: (out, r) @ (r, in) = (out, in). Write
W + scaling · B A into a new layer (under `torch.no_grad()`, since copying into a parameter is not part
of any computation to differentiate), and copy the bias.
""")

code(r"""
def merge(lora):
    base = lora.base
    merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None)
    with torch.no_grad():
        merged.weight.copy_(base.weight + lora.scaling * lora.lora_B.weight @ lora.lora_A.weight)
        if base.bias is not None:
            merged.bias.copy_(base.bias)
    return merged

check("07.6", merge)
""")

md(r"""
It agrees with labkit's `LoRALinear.merged()`:
""")

code(r"""
torch.manual_seed(1)
lora = LoRALinear(nn.Linear(6, 3), rank=2, alpha=8)
with torch.no_grad():
    lora.lora_B.weight.normal_()
assert torch.allclose(merge(lora).weight, lora.merged().weight)
x = torch.randn(5, 6)
print(f"largest difference from the LoRA layer: {(merge(lora)(x) - lora(x)).abs().max().item():.1e}")
""")

code(r"""
result = summary("07b")
display(result)
assert result.all_passed, result.missing
""")

solution_cells = cells


def write(path, the_cells, settings, prose):
    nb = new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    out = []
    for cell in the_cells:
        cell = nbformat.from_dict(dict(cell))
        src = cell.source
        for key, value in {**settings, **prose}.items():
            src = src.replace(f"__{key}__", str(value))
        assert "__" not in src.replace("__init__", "").replace("__version__", "").replace("__name__", ""), src[:200]
        cell.source = src
        out.append(cell)
    nb.cells = out
    nbformat.write(nb, path)


if __name__ == "__main__":
    import json
    import sys
    config = json.load(open(Path(__file__).with_name("07b_settings.json")))
    write(Path(__file__).resolve().parents[2] / "chapters" / f"{NAME}.ipynb", chapter_cells, config["settings"], config["prose"])
    write(Path(__file__).resolve().parents[2] / "solutions" / f"{NAME}_solutions.ipynb", solution_cells, {}, {})
    print("written")
