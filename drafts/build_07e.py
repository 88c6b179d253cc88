import nbformat as nbf
import pathlib

SOL_12 = """
def run_top_blocks(model, x, k):
    cos, sin = model.rotary(0, x.shape[1], x.dtype)
    for block in model.blocks[-k:]:
        x = block(x, cos, sin)
    return model.norm(x)

check("07.12", run_top_blocks)
"""
SOL_13 = """
def lora_parameters(config, k, rank):
    c, kv, h = config.n_embd, config.n_kv_head * config.head_dim, config.n_hidden
    shapes = [(c, c), (c, kv), (c, kv), (c, c), (c, h), (c, h), (h, c)]  # (in, out) of q, k, v, o, gate, up, down
    return k * rank * sum(i + o for i, o in shapes)

check("07.13", lora_parameters)
"""
SOL_14a = """
prediction = "a"
"""
SOL_14b = """
measured = 100 * trained / total
explanation = "a"
check("07.14", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))
"""
import sys
SOLUTIONS = len(sys.argv) > 1
nb = nbf.v4.new_notebook()
C = []
def md(s): C.append(nbf.v4.new_markdown_cell(s.strip()))
def code(s, tags=()):
    c = nbf.v4.new_code_cell(s.strip())
    if tags: c.metadata["tags"] = list(tags)
    C.append(c)
md("""
# 07e · Fine-tuning a real LLM beside the course GPT (SmolLM2 微调)

In 07b the course's `base_bpe` (6 layers, 5.9 M parameters, 12 M tokens read) lost to a bag of words.
Here the same English reviews go to SmolLM2-135M (30 layers, 135 M parameters, trillions of tokens read),
loaded by the course's own code in 06d. You will: compute SmolLM2's frozen features once, train a linear
probe on them, fine-tune **the top k of its 30 blocks** (LoRA r=8, and all their weights) on cached hidden
states, and compare with `base_bpe` and the bag of words on the same reviews, the same window and split.

*Draft: sizes are set for a 2-core CPU; every number below is printed by code.*
""")
code("""
import copy
import re
import time
import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from ipywidgets import interact, widgets
from torch import nn
from torch.utils.data import TensorDataset

import labkit
from labkit.data import load_reviews
from labkit.exercises import check, summary
from labkit.finetune import apply_lora, encode_batch
from labkit.llama import Llama, LlamaConfig

labkit.seed_everything(0)
N_TRAIN, N_TEST, WINDOW, TOP_K, N_CHINESE = 400, 300, 32, 2, 150   # reviews, tokens, top blocks fine-tuned
print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
""", ["browser-setup"])
md("""
## 1 · The reviews, and a window from their lengths

The same reviews as 07b: its seeded permutation of the English training reviews (we take the first
`N_TRAIN` of the 2 000 it uses) and a seeded subset of `N_TEST` test reviews. SmolLM2's tokenizer is not
the course's, so the window is chosen from SmolLM2's token counts (printed).
""")
code("""
smol, smol_tok = labkit.load_smollm2(dtype=torch.bfloat16)   # bf16: measured ≈ 2× faster than fp32 here
base, base_tok = labkit.load_pretrained("base_bpe")[:2]

def subset(lang, split, n):
    texts, labels = load_reviews(lang, split)
    keep = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))[:n].tolist()
    return [texts[i] for i in keep], torch.tensor([labels[i] for i in keep])

english = {"train": subset("rotten_tomatoes", "train", N_TRAIN), "test": subset("rotten_tomatoes", "test", N_TEST)}
lengths = torch.tensor([len(smol_tok.encode(t)) for t in english["train"][0]]).float()
q = lengths.quantile(torch.tensor([0.5, 0.75, 0.9]))
print(f"SmolLM2 tokens per review: median {q[0]:.0f}, 75% {q[1]:.0f}, 90% {q[2]:.0f}, longest {lengths.max():.0f}; "
      f"a window of {WINDOW} keeps all of {(lengths <= WINDOW).float().mean():.0%} of the reviews")
""", ["browser-setup"])
md("""
## 2 · Frozen features, and the states that enter the top blocks, in one pass

`Llama.hidden_states_entering(idx, k)` runs blocks 0 … k−1; `hidden_states_from(x, k)` runs the rest and
the final norm (a unit test proves the two together equal the full forward). One forward pass gives both
the states entering block 30 − `TOP_K` (cached for fine-tuning) and the final states (mean-pooled over the
real tokens: the probe's features). Rows are sorted by length so a batch costs its longest review.
""")
code("""
@torch.no_grad()
def smol_pass(texts, k=TOP_K, batch_size=32):
    PAD = smol_tok.token_id("<|endoftext|>")
    idx = encode_batch(smol_tok, texts, WINDOW, PAD)                 # (N, WINDOW), right-padded
    lens = (idx != PAD).sum(1).clamp(min=1)
    cut = smol.config.n_layer - k
    entering, pooled = torch.zeros(len(idx), WINDOW, smol.config.n_embd, dtype=torch.bfloat16), []
    order = lens.argsort()
    for s in range(0, len(idx), batch_size):
        rows = order[s:s + batch_size]
        T = int(lens[rows].max())
        x = smol.hidden_states_entering(idx[rows, :T], cut)          # (B, T, C)
        h = smol.hidden_states_from(x, cut).float()                  # (B, T, C), after the final norm
        real = (torch.arange(T) < lens[rows, None]).unsqueeze(-1)
        entering[rows, :T] = x
        pooled.append((rows, (h * real).sum(1) / lens[rows, None]))
    feats = torch.zeros(len(idx), smol.config.n_embd)
    for rows, p in pooled:
        feats[rows] = p
    return feats, entering, lens

# NBVAL_IGNORE_OUTPUT
start = time.perf_counter()
smol_data = {split: smol_pass(texts) for split, (texts, _) in english.items()}
smol_seconds = time.perf_counter() - start
n_tokens = sum(int(v[2].sum()) for v in smol_data.values())
print(f"SmolLM2 (bf16): {n_tokens:,} tokens of {N_TRAIN + N_TEST} reviews in {smol_seconds:.0f} s "
      f"({n_tokens / smol_seconds:.0f} tokens/s)")
""", ["browser-setup"])
md("""
## 3 · base_bpe's cheap rows on the same reviews, and the bag of words

07b's recipe, recomputed here on exactly these reviews: mean-pooled frozen features of `base_bpe`, and a
bag of words over `base_bpe`'s 4 096 tokens (window 32 of its tokens, as in 07b).
""")
code("""
BASE_PAD = base_tok.special_tokens["<|endoftext|>"]

@torch.no_grad()
def base_features(texts):
    idx = encode_batch(base_tok, texts, WINDOW, BASE_PAD)
    lens = (idx != BASE_PAD).sum(1).clamp(min=1)
    h = base.hidden_states(idx)
    real = (torch.arange(idx.shape[1]) < lens[:, None]).unsqueeze(-1)
    return (h * real).sum(1) / lens[:, None], idx

base_data = {split: base_features(texts) for split, (texts, _) in english.items()}

def bag_of_words(idx):
    marks = torch.zeros(len(idx), base_tok.vocab_size).scatter_(1, idx, 1.0)
    marks[:, BASE_PAD] = 0
    return marks

def train_linear(x, y, epochs=10, lr=1e-2, weight_decay=0.0):
    # a logistic regression (one nn.Linear) on fixed features, 07b's head-only recipe
    torch.manual_seed(0)
    head = nn.Linear(x.shape[1], 2)
    labkit.fit(head, TensorDataset(x, y), epochs=epochs, lr=lr, batch_size=16, optimizer="adamw",
               weight_decay=weight_decay, seed=0, verbose=False)
    return head
""", ["browser-setup"])
code("""
y_train, y_test = english["train"][1], english["test"][1]

def probe_accuracy(train_x, test_x, n=None):
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6          # standardise with the training statistics
    n = len(train_x) if n is None else n
    head = train_linear((train_x[:n] - mean) / std, y_train[:n])
    return labkit.evaluate(head, TensorDataset((test_x - mean) / std, y_test))["accuracy"]

rows = {}
rows["bag of words"] = labkit.evaluate(train_linear(bag_of_words(base_data["train"][1]), y_train, lr=3e-3, weight_decay=1.0),
                                       TensorDataset(bag_of_words(base_data["test"][1]), y_test))["accuracy"]
rows["base_bpe linear probe"] = probe_accuracy(base_data["train"][0], base_data["test"][0])
rows["SmolLM2 linear probe"] = probe_accuracy(smol_data["train"][0], smol_data["test"][0])
majority = max(y_test.float().mean().item(), 1 - y_test.float().mean().item())
for name, acc in rows.items():
    print(f"{name:<24} {acc:.1%}")
print(f"{'majority class':<24} {majority:.1%}")
""", ["browser-setup"])
md("""
## 4 · LoRA and full fine-tuning of SmolLM2's top k blocks

Back-propagating through all 30 blocks costs about 3× a forward pass per review and epoch: too slow here.
The states entering block 30 − k are cached, so training runs only the **top k of 30 blocks** plus a new
head. This is LoRA (r = 8 on every linear layer of those blocks) or full fine-tuning **of the top k blocks**,
not of the whole model: the lower 30 − k blocks stay frozen in both.
""")
code("""
class TopBlocksClassifier(nn.Module):
    # cached states (B, T, C) entering block 30 − k → class logits (B, 2): top k blocks, final norm, mean pool, head
    def __init__(self, llama, k):
        super().__init__()
        self.blocks = copy.deepcopy(llama.blocks[-k:]).float()
        self.norm = copy.deepcopy(llama.norm).float()
        self.rotary = llama.rotary
        self.head = nn.Linear(llama.config.n_embd, 2)

    def forward(self, x, lens):
        x = x.float()
        cos, sin = self.rotary(0, x.shape[1], x.dtype)
        for block in self.blocks:
            x = block(x, cos, sin)
        h = self.norm(x)
        real = (torch.arange(x.shape[1]) < lens[:, None]).unsqueeze(-1)
        return self.head((h * real).sum(1) / lens[:, None])

def fine_tune(method, k=TOP_K, epochs=2, batch_size=16):
    torch.manual_seed(0)
    model = TopBlocksClassifier(smol, k)
    if method == "LoRA r=8":
        apply_lora(model.blocks, targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                   rank=8, alpha=16)
    lr = 1e-3 if method == "LoRA r=8" else 1e-4
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    _, x, lens = smol_data["train"]
    start = time.perf_counter()
    for epoch in range(epochs):
        for rows in torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch)).split(batch_size):
            T = int(lens[rows].max())
            loss = nn.functional.cross_entropy(model(x[rows, :T], lens[rows]), y_train[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    _, tx, tlens = smol_data["test"]
    with torch.no_grad():
        preds = torch.cat([model(tx[r, :int(tlens[r].max())], tlens[r]).argmax(1) for r in torch.arange(len(tx)).split(64)])
    return dict(accuracy=labkit.accuracy(preds, y_test), seconds=seconds, trainable=sum(p.numel() for p in params))
""")
code("""
# NBVAL_IGNORE_OUTPUT
tuned = {method: fine_tune(method) for method in ("LoRA r=8", "full")}
for method, r in tuned.items():
    print(f"SmolLM2 top {TOP_K} of 30 blocks, {method:<8}: {r['accuracy']:.1%}, {r['trainable']:,} trainable, {r['seconds']:.0f} s")
""")
md("""
## 5 · The table, with 07b's expensive rows

`base_bpe`'s full, LoRA and from-scratch rows are **read from 07b's committed outputs** by the code below
(they were measured there on 2 000 training reviews and all 1 274 test reviews, not on this subset).
""")
code("""
nb07b = json.loads(Path("../chapters/07b_classification_and_lora.ipynb").read_text(encoding="utf-8"))
text07b = "".join("".join(o.get("text", "")) for c in nb07b["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
from_07b = {m: float(v) / 100 for m, v in re.findall(r"English\\s+(full|LoRA r=8|from scratch)\\s+test accuracy ([\\d.]+)%", text07b)}
table = {**rows, **{f"SmolLM2 top-{TOP_K} {m}": r["accuracy"] for m, r in tuned.items()},
         **{f"base_bpe {m} (07b)": a for m, a in from_07b.items()}}
for name, acc in sorted(table.items(), key=lambda kv: -kv[1]):
    print(f"  {name:<30} {acc:.1%}")
best = max(acc for name, acc in table.items() if name.startswith("SmolLM2"))
print(f"SmolLM2's best − bag of words: {100 * (best - rows['bag of words']):+.1f} points; "
      f"− base_bpe from scratch (07b): {100 * (best - from_07b.get('from scratch', float('nan'))):+.1f} points (target ≥ +8)")
print(f"LoRA r=8 − linear probe: {100 * (tuned['LoRA r=8']['accuracy'] - rows['SmolLM2 linear probe']):+.1f} points (target > 0); "
      f"LoRA − full (top {TOP_K}): {100 * (tuned['LoRA r=8']['accuracy'] - tuned['full']['accuracy']):+.1f} points (target within 2)")
""")
md("""
## 6 · Chinese: what SmolLM2 knows

06d showed SmolLM2 writes little Chinese. The same probe on `N_CHINESE` Chinese reviews (train and test):
""")
code("""
# NBVAL_IGNORE_OUTPUT
chinese = {"train": subset("chinese_reviews", "train", N_CHINESE), "test": subset("chinese_reviews", "test", N_CHINESE)}
zh_smol = {s: smol_pass(t, k=1)[0] for s, (t, _) in chinese.items()}
zh_base = {s: base_features(t)[0] for s, (t, _) in chinese.items()}
y_train_en, y_test_en = y_train, y_test
y_train, y_test = chinese["train"][1], chinese["test"][1]
zh = {"SmolLM2 probe": probe_accuracy(zh_smol["train"], zh_smol["test"]), "base_bpe probe": probe_accuracy(zh_base["train"], zh_base["test"])}
y_train, y_test = y_train_en, y_test_en
print(", ".join(f"Chinese {k}: {v:.1%}" for k, v in zh.items()))
""")
md("""
## 7 · How many labels does each model need? (slider)

Only the logistic head retrains on cached features, so the curves are computed once; the slider reads them.
""")
code("""
SIZES = [25, 50, 100, 200, N_TRAIN]
curves = {"SmolLM2": [probe_accuracy(smol_data["train"][0], smol_data["test"][0], n) for n in SIZES],
          "base_bpe": [probe_accuracy(base_data["train"][0], base_data["test"][0], n) for n in SIZES]}
""", ["browser-setup"])
code("""
# NBVAL_IGNORE_OUTPUT
def show(n_labelled=SIZES[-1]):
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for name, accs in curves.items():
        ax.plot(SIZES, accs, "o-", label=name)
        ax.plot([n_labelled], [accs[SIZES.index(n_labelled)]], "ks")
    ax.axhline(rows["bag of words"], ls="--", c="grey", label="词袋 bag of words (all labels)")
    ax.set_xscale("log"); ax.set_xlabel("标注评论数 labelled reviews"); ax.set_ylabel("测试准确率 test accuracy")
    ax.legend(); plt.show()

interact(show, n_labelled=widgets.SelectionSlider(options=SIZES, value=SIZES[-1], description="labels"));
""", ["browser-test"])

md("""
## Exercises

Each stub: replace `raise NotImplementedError` (or `...`) with your answer and run the cell; the check says ✓ or ✗.

**07.12 Only the top k blocks.** Write `run_top_blocks(model, x, k)`: `x` (B, T, C) are the hidden states entering
`model.blocks[-k]` of a labkit `Llama`; return the final hidden states (B, T, C), as `model.hidden_states` would,
without calling `hidden_states_from`. (Rotary: `cos, sin = model.rotary(0, T, x.dtype)`; a block is `block(x, cos, sin)`.)
""")
code(SOL_12 if SOLUTIONS else """
def run_top_blocks(model, x, k):
    raise NotImplementedError  # TODO: states (B, T, C) entering the top k blocks → final hidden states

check("07.12", run_top_blocks)
""")
md("""
**07.13 What LoRA trains (a variation).** Write `lora_parameters(config, k, rank)`: how many numbers LoRA of
rank `rank` trains on all seven linear layers (q, k, v, o, gate, up, down) of the top `k` blocks of a Llama with
`LlamaConfig` `config`. Mind grouped-query attention.
""")
code(SOL_13 if SOLUTIONS else """
def lora_parameters(config, k, rank):
    raise NotImplementedError  # TODO: numbers LoRA trains on every linear layer of the top k blocks

check("07.13", lora_parameters)
""")
md("""
**07.14 Predict, measure, explain.** What share of SmolLM2-135M's parameters does LoRA r=8 on every linear layer
of its top 2 blocks train? (a) under 0.5 %, (b) between 0.5 % and 5 %, (c) over 5 %. Decide before you run the
measurement cell.
""")
code(SOL_14a if SOLUTIONS else """
prediction = ...  # TODO: "a", "b" or "c": decide BEFORE you run the next cell
""")
code("""
committed = prediction
with torch.device("meta"):                      # shapes only: no memory, no weights
    shell = Llama(LlamaConfig())
    total = shell.num_parameters()              # before LoRA adds its matrices
    apply_lora(shell.blocks[-2:], targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), rank=8)
trained = sum(p.numel() for p in shell.blocks[-2:].parameters() if p.requires_grad)
print(f"LoRA r=8 on the top 2 blocks trains {trained:,} numbers: {100 * trained / total:.3f}% of SmolLM2")
""")
code(SOL_14b if SOLUTIONS else """
measured = ...     # TODO: the percentage the cell printed
explanation = ...  # TODO: "a", "b" or "c" (see the chapter's check hint for the options)
check("07.14", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))
""")
code("""
summary("07e")
""")

md("""
## 中文小结

本节把 SmolLM2-135M 放在课程的 `base_bpe` 旁边，用同样的英文影评、同样的窗口和划分做情感分类：冻结特征上的线性探测、
只微调最上面 k 个块（共 30 个）的 LoRA r=8 与全量微调，以及词袋模型。缓存进入第 30−k 个块的隐藏状态后，训练只需跑最上面的 k 个块。
表中的数字都由代码打印。中文评论上也做了同样的线性探测。
""")
nb.cells = C
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
HERE = pathlib.Path(__file__).resolve().parent
nbf.write(nb, HERE / ("07e_real_llm_finetuning_solutions.ipynb" if SOLUTIONS else "07e_real_llm_finetuning.ipynb"))
