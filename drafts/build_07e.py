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
md(r"""
# 07e · Fine-tuning a real LLM beside the course GPT (SmolLM2 微调)

In 07b the course's `base_bpe` (6 layers, 5.9 M parameters, pretrained on a laptop) lost to a bag of words,
and training the same network from scratch came close to fine-tuning it. A learner could conclude that
pretraining is worth little. This chapter gives the missing half of the lesson: the same English reviews go
to SmolLM2-135M (30 layers, 135 M parameters, pretrained by its makers on trillions of tokens), loaded by the
course's own code in [06d](06d_real_llm.ipynb).

**What you will be able to do.** Compute a large model's frozen features once and fit a regularised linear
probe on them, choosing its strength on validation reviews; fine-tune only the top k of its 30 blocks from
cached hidden states (LoRA r = 8, and all their weights), starting the head from the probe; read a comparison
honestly, with its error bars; see what in-context examples do for a model that was never tuned on 07c's
questions; and measure how many labels each model needs.
""")
code(r"""
import copy
import json
import re
import time
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from ipywidgets import interact, widgets
from torch import nn

import labkit
from labkit.data import EXACT_MATCH_TASKS, load_instructions, load_reviews
from labkit.exercises import check, summary
from labkit.finetune import apply_lora, encode_batch
from labkit.instruct import exact_match, format_prompt, normalized_exact_match, respond
from labkit.llama import Llama, LlamaConfig
from labkit.metrics import accuracy_interval
from labkit.smollm2 import chat

labkit.seed_everything(0)
N_TRAIN, N_VAL, N_TEST = 1000, 300, 600   # English reviews per split, in 07b's seeded order
WINDOW, TOP_K, N_CHINESE = 32, 2, 200     # tokens per review (as 07b), top blocks fine-tuned, Chinese reviews per split
print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
""", ["browser-setup"])
md(r"""
## 1 · The reviews, and a window from their lengths

The same reviews as 07b, in its seeded order: the first `N_TRAIN` training reviews, and the first `N_VAL` and
`N_TEST` of the validation and test reviews. SmolLM2's tokenizer is not the
course's, so the cell prints how much of each review a window of `WINDOW` SmolLM2 tokens keeps.
""")
code(r"""
smol, smol_tok = labkit.load_smollm2(dtype=torch.bfloat16)   # bf16 weights: about twice as fast as fp32 on this CPU (06d)
base, base_tok = labkit.load_pretrained("base_bpe")[:2]


def subset(lang, split, n):  # the first n reviews of a seeded permutation: (texts, labels (n,))
    texts, labels = load_reviews(lang, split)
    keep = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))[:n].tolist()
    return [texts[i] for i in keep], torch.tensor([labels[i] for i in keep])


english = {split: subset("rotten_tomatoes", split, n) for split, n in (("train", N_TRAIN), ("val", N_VAL), ("test", N_TEST))}
lengths = torch.tensor([len(smol_tok.encode(t)) for t in english["train"][0]]).float()
q = lengths.quantile(torch.tensor([0.5, 0.75, 0.9]))
print(f"SmolLM2 tokens per review: median {q[0]:.0f}, 75% {q[1]:.0f}, 90% {q[2]:.0f}, longest {lengths.max():.0f}; "
      f"a window of {WINDOW} keeps all of {(lengths <= WINDOW).float().mean():.0%} of the reviews")
""", ["browser-setup"])
md(r"""
## 2 · Frozen features, and the states that enter the top blocks, in one pass

`Llama.hidden_states_entering(idx, k)` runs blocks 0 … k−1; `hidden_states_from(x, k)` runs the rest and the
final norm (a unit test proves the two together equal the full forward). One forward pass gives both the states
entering block 30 − `TOP_K` (kept, to fine-tune the top blocks later without running the 28 below again) and
the final states, averaged over each review's real tokens: the probe's features. Rows are sorted by length, so
a batch costs its longest review, not the window.
""")
code(r"""
@torch.no_grad()
def smol_pass(texts, k=TOP_K, batch_size=32):
    # texts → (features (N, C) float32, states entering block n_layer − k (N, WINDOW, C) bf16, lengths (N,))
    pad = smol_tok.token_id("<|endoftext|>")
    idx = encode_batch(smol_tok, texts, WINDOW, pad)                 # (N, WINDOW), right-padded
    lens = (idx != pad).sum(1).clamp(min=1)
    cut = smol.config.n_layer - k
    entering = torch.zeros(len(idx), WINDOW, smol.config.n_embd, dtype=torch.bfloat16)
    feats = torch.zeros(len(idx), smol.config.n_embd)
    order = lens.argsort()
    for s in range(0, len(idx), batch_size):
        rows = order[s:s + batch_size]
        T = int(lens[rows].max())
        x = smol.hidden_states_entering(idx[rows, :T], cut)          # (B, T, C)
        h = smol.hidden_states_from(x, cut).float()                  # (B, T, C), after the final norm
        real = (torch.arange(T) < lens[rows, None]).unsqueeze(-1)    # (B, T, 1)
        entering[rows, :T] = x
        feats[rows] = (h * real).sum(1) / lens[rows, None]
    return feats, entering, lens
""", ["browser-setup"])
code(r"""
# NBVAL_IGNORE_OUTPUT
start = time.perf_counter()
smol_data = {split: smol_pass(texts) for split, (texts, _) in english.items()}
smol_seconds = time.perf_counter() - start
n_tokens = sum(int(v[2].sum()) for v in smol_data.values())
print(f"SmolLM2 (bf16): {n_tokens:,} tokens of {sum(len(t) for t, _ in english.values()):,} reviews in "
      f"{smol_seconds:.0f} s ({n_tokens / smol_seconds:.0f} tokens/s)")
""", ["browser-setup"])
md(r"""
## 3 · A linear probe done properly, for every model, and the bag of words

07b's probe trained a head for ten epochs with Adam and no penalty. With 576 or more features and a thousand
reviews, that overfits, and the result depends on when it stops. A probe has a better-known recipe: a
**logistic regression fitted to convergence** (L-BFGS) with an **L2 penalty** λ‖W‖², on standardised features,
λ chosen by accuracy on the *validation* reviews. The same function fits all three linear rows: SmolLM2's
features, `base_bpe`'s (07b's mean pooling, same window), and a bag of words over `base_bpe`'s 4 096 tokens.
The standardisation is folded into the returned `nn.Linear`, so it takes raw features; section 4 starts from it.
""")
code(r"""
def fit_probe(x, y, lam):
    # features x (N, D), labels y (N,) → nn.Linear(D, 2): L2-regularised logistic regression on standardised
    # features, fitted to convergence; the standardisation folded into its weights
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    w = torch.zeros(x.shape[1], 2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def objective():
        opt.zero_grad()
        value = F.cross_entropy(xs @ w + b, y) + lam * w.pow(2).sum()
        value.backward()
        return value

    opt.step(objective)
    head = nn.Linear(x.shape[1], 2)
    with torch.no_grad():
        head.weight.copy_((w / std[:, None]).T)      # (2, D): logits = ((x − mean) / std) @ w + b
        head.bias.copy_(b - head.weight @ mean)
    return head


@torch.no_grad()
def accuracy(head, x, y):
    return (head(x).argmax(1) == y).float().mean().item()


LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0)


def probe(features, labels, n=None):
    # features and labels: dicts with "train", "val" (and "test"); the head whose λ scores best on "val"
    n = len(labels["train"]) if n is None else n
    heads = {lam: fit_probe(features["train"][:n], labels["train"][:n], lam) for lam in LAMBDAS}
    lam = max(LAMBDAS, key=lambda lam: accuracy(heads[lam], features["val"], labels["val"]))
    return heads[lam], lam
""", ["browser-setup"])
code(r"""
BASE_PAD = base_tok.special_tokens["<|endoftext|>"]


@torch.no_grad()
def base_features(texts):  # (mean-pooled base_bpe features (N, 256), bag of words (N, 4096))
    idx = encode_batch(base_tok, texts, WINDOW, BASE_PAD)
    lens = (idx != BASE_PAD).sum(1).clamp(min=1)
    h = base.hidden_states(idx)
    real = (torch.arange(idx.shape[1]) < lens[:, None]).unsqueeze(-1)
    words = torch.zeros(len(idx), base_tok.vocab_size).scatter_(1, idx, 1.0)   # 1 where a token occurs
    words[:, BASE_PAD] = 0
    return (h * real).sum(1) / lens[:, None], words


labels = {split: y for split, (_, y) in english.items()}
base_data = {split: base_features(texts) for split, (texts, _) in english.items()}
features = {"bag of words": {s: base_data[s][1] for s in english},
            "base_bpe linear probe": {s: base_data[s][0] for s in english},
            "SmolLM2 linear probe": {s: smol_data[s][0] for s in english}}
rows, heads, lams = {}, {}, {}
for name, x in features.items():
    heads[name], lams[name] = probe(x, labels)
    rows[name] = accuracy(heads[name], x["test"], labels["test"])
majority = max(labels["test"].float().mean().item(), 1 - labels["test"].float().mean().item())
for name, acc in rows.items():
    print(f"{name:<24} {acc:.1%}   (λ = {lams[name]:g}, chosen on the validation reviews)")
print(f"{'majority class':<24} {majority:.1%}")
""", ["browser-setup"])
md(r"""
Already the lesson 07b could not give: a linear read-out of SmolLM2's features beats the bag of words by a
wide margin, and `base_bpe`'s features are barely better than guessing the majority class. Pretraining on
trillions of tokens put sentiment into the features; 12 million tokens did not.

## 4 · LoRA and full fine-tuning of SmolLM2's top k blocks

Back-propagating through all 30 blocks costs about three forward passes per review and epoch: too slow for
this notebook. The states entering block 30 − k were kept in section 2, so training runs only **the top k of
30 blocks**, the final norm and the head. This is LoRA (r = 8 on every linear layer of those blocks) or full
fine-tuning **of the top k blocks**, not of the whole model: the lower 30 − k blocks stay frozen in both.

**Where the head starts matters.** A new, random head sends large, arbitrary gradients into the blocks during
the first steps and can damage the very features that made the probe good. Starting from the probe's head
(*linear probing, then fine-tuning*, LP-FT; Kumar et al. 2022) begins at the probe's accuracy and changes the
features only where the loss asks for it. Both are measured below: LoRA with a new head, LoRA and full
fine-tuning from the probe's head. LoRA's B starts at zero, so at step 0 the LP-FT model *is* the probe.
""")
code(r"""
class TopBlocksClassifier(nn.Module):
    # cached states (B, T, C) entering block n_layer − k → class logits (B, 2): top k blocks, final norm, mean pool, head
    def __init__(self, llama, k, head=None):
        super().__init__()
        self.blocks = copy.deepcopy(llama.blocks[-k:]).float()
        self.norm = copy.deepcopy(llama.norm).float()
        self.rotary = llama.rotary
        self.head = copy.deepcopy(head) if head is not None else nn.Linear(llama.config.n_embd, 2)

    def forward(self, x, lens):
        x = x.float()
        cos, sin = self.rotary(0, x.shape[1], x.dtype)
        for block in self.blocks:
            x = block(x, cos, sin)
        h = self.norm(x)
        real = (torch.arange(x.shape[1]) < lens[:, None]).unsqueeze(-1)
        return self.head((h * real).sum(1) / lens[:, None])
""")
code(r"""
LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def fine_tune(method, head=None, k=TOP_K, epochs=2, batch_size=16):
    # method "LoRA r=8" or "full"; head None (a new one) or the probe's → test accuracy, seconds, trainable numbers
    torch.manual_seed(0)
    model = TopBlocksClassifier(smol, k, head)
    if method == "LoRA r=8":
        apply_lora(model.blocks, targets=LINEAR_LAYERS, rank=8, alpha=16)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3 if method == "LoRA r=8" else 3e-5)   # LoRA's B starts at 0: a larger rate
    _, x, lens = smol_data["train"]
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / steps)   # linear decay to 0
    start = time.perf_counter()
    for epoch in range(epochs):
        for rows in torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch)).split(batch_size):
            T = int(lens[rows].max())
            loss = F.cross_entropy(model(x[rows, :T], lens[rows]), labels["train"][rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    seconds = time.perf_counter() - start
    _, tx, tlens = smol_data["test"]
    with torch.no_grad():
        preds = torch.cat([model(tx[r, :int(tlens[r].max())], tlens[r]).argmax(1) for r in torch.arange(len(tx)).split(64)])
    return dict(accuracy=labkit.accuracy(preds, labels["test"]), seconds=seconds, trainable=sum(p.numel() for p in params))
""")
code(r"""
# NBVAL_IGNORE_OUTPUT
probe_head = heads["SmolLM2 linear probe"]
tuned = {"LoRA r=8, new head": fine_tune("LoRA r=8"),
         "LoRA r=8, probe's head": fine_tune("LoRA r=8", probe_head),
         "full, probe's head": fine_tune("full", probe_head)}
for name, r in tuned.items():
    print(f"SmolLM2 top {TOP_K} of 30 blocks, {name:<22}: {r['accuracy']:.1%}, {r['trainable']:>9,} trainable, {r['seconds']:.0f} s")
""")
md(r"""
## 5 · The table, with 07b's expensive rows, and what a difference is worth

`base_bpe`'s full, LoRA and from-scratch rows are **read from 07b's committed outputs** by the code below: they
were measured there on 07b's training subset and on all the English test reviews, not on this notebook's
`N_TEST`, so compare them with care. With `N_TEST` test reviews, an accuracy is itself uncertain: the Wilson interval (chapter 12) of each
row is printed beside it.
""")
code(r"""
nb07b = json.loads(Path("07b_classification_and_lora.ipynb").read_text(encoding="utf-8"))
text07b = "".join("".join(o.get("text", "")) for c in nb07b["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
from_07b = {m: float(v) / 100 for m, v in re.findall(r"English\s+(full|LoRA r=8|from scratch)\s+test accuracy ([\d.]+)%", text07b)}
table = {**rows, **{f"SmolLM2 top-{TOP_K} {name}": r["accuracy"] for name, r in tuned.items()},
         **{f"base_bpe {m} (07b)": a for m, a in from_07b.items()}}
for name, acc in sorted(table.items(), key=lambda kv: -kv[1]):
    n = len(load_reviews("rotten_tomatoes", "test")[1]) if name.endswith("(07b)") else N_TEST
    low, high = accuracy_interval(round(acc * n), n)
    print(f"  {name:<38} {acc:6.1%}   95% interval [{low:.1%}, {high:.1%}]")
print(f"  {'majority class':<38} {majority:6.1%}")
""")
code(r"""
smol_best = max(acc for name, acc in table.items() if name.startswith("SmolLM2"))
lora, full = tuned["LoRA r=8, probe's head"]["accuracy"], tuned["full, probe's head"]["accuracy"]
print(f"SmolLM2's best − bag of words: {100 * (smol_best - rows['bag of words']):+.1f} points; "
      f"− base_bpe from scratch (07b): {100 * (smol_best - from_07b['from scratch']):+.1f} points")
print(f"LoRA r=8 (probe's head) − linear probe: {100 * (lora - rows['SmolLM2 linear probe']):+.1f} points; "
      f"LoRA − full fine-tuning of the same blocks: {100 * (lora - full):+.1f} points")
print(f"a new head instead of the probe's: {100 * (tuned['LoRA r=8, new head']['accuracy'] - lora):+.1f} points for LoRA")
assert smol_best - rows["bag of words"] >= 0.08 and smol_best - from_07b["from scratch"] >= 0.08
""")
md(r"""
**Reading it.** The big gap is between models, not between methods: every SmolLM2 row is far above every
`base_bpe` row and the bag of words. *That* is what pretraining is worth. Between SmolLM2's own methods the
differences are small: compare them with the intervals, which are several points wide at this test size.
Fine-tuning the top blocks from the probe's head stays close to the probe: with a thousand labels and two of
thirty blocks, the features the probe reads were already most of what there is to find. Starting from a new
head cost LoRA more than any other choice here (printed above), in the direction Kumar et al. found: a random
head's first gradients change the features before the head has learned to read them.
Fine-tuning all 30 blocks, with more labels, is where fine-tuning pulls ahead of a probe in the literature.
By section 4's estimate (about three forward passes per review and epoch, in float32) it would take roughly as
long as this whole notebook, so it is not run here.

## 6 · Chinese: what SmolLM2 knows

06d showed SmolLM2 writes little Chinese. The same probe, with λ chosen the same way, on `N_CHINESE` Chinese
reviews per split:
""")
code(r"""
# NBVAL_IGNORE_OUTPUT
chinese = {split: subset("chinese_reviews", split, N_CHINESE) for split in ("train", "val", "test")}
zh_labels = {split: y for split, (_, y) in chinese.items()}
zh_features = {"SmolLM2": {s: smol_pass(t)[0] for s, (t, _) in chinese.items()},
               "base_bpe": {s: base_features(t)[0] for s, (t, _) in chinese.items()}}
zh = {name: accuracy(probe(x, zh_labels)[0], x["test"], zh_labels["test"]) for name, x in zh_features.items()}
print(", ".join(f"Chinese {name} probe: {acc:.1%}" for name, acc in zh.items()))
zh_texts = chinese["train"][0]
chars = sum(len(t) for t in zh_texts)
smol_lengths = torch.tensor([len(smol_tok.encode(t)) for t in zh_texts])
print(f"characters per token: SmolLM2 {chars / smol_lengths.sum():.2f}, base_bpe "
      f"{chars / sum(len(base_tok.encode(t)) for t in zh_texts):.2f}; a window of {WINDOW} SmolLM2 tokens keeps all of "
      f"{(smol_lengths <= WINDOW).float().mean():.0%} of the Chinese reviews (English: section 1)")
""")
md(r"""
SmolLM2's tokenizer, built mostly for English, spends about two tokens on a Chinese character, where `base_bpe`
(trained on Chinese too) spends less than one (printed): a window of 32 SmolLM2 tokens holds only a short stretch
of most Chinese reviews. Even so, compare SmolLM2's probe with `base_bpe`'s here and in English (section 3): a
little Chinese among trillions of tokens is still more Chinese than `base_bpe` read, but the lead is not the same.

## 7 · 07c's questions: instruction tuning, or three examples in the prompt

07c instruction-tuned `base_bpe` on the course's instruction set; the shipped checkpoint `instruct_bpe` is
that recipe. SmolLM2-135M-*Instruct* was instruction-tuned by its makers on their own data, never on these
questions. Here are both on the same held-out English questions with exact answers (07c's metric: exact match,
and a normalised one that ignores case, spaces and punctuation). SmolLM2 answers twice: **zero-shot** (the
question alone) and **three-shot** (three solved training examples of the same task first, as earlier turns of
the chat): no weights change, only the prompt.
""")
code(r"""
# NBVAL_IGNORE_OUTPUT
PER_TASK, SHOTS = 12, 3
test_q = [r for r in load_instructions("test") if r["task"] in EXACT_MATCH_TASKS and r["lang"] == "en"]
train_q = [r for r in load_instructions("train") if r["task"] in EXACT_MATCH_TASKS and r["lang"] == "en"]
TASKS = sorted({r["task"] for r in test_q})
g = torch.Generator().manual_seed(0)
questions = []
for task in TASKS:
    of_task = [r for r in test_q if r["task"] == task]
    questions += [of_task[i] for i in torch.randperm(len(of_task), generator=g)[:PER_TASK].tolist()]
refs = [r["output"] for r in questions]
shots = {task: [r for r in train_q if r["task"] == task][:SHOTS] for task in TASKS}


def messages(record, k):  # the chat: k solved examples of the task, then the question
    turns = []
    for s in shots[record["task"]][:k]:
        turns += [{"role": "user", "content": format_prompt(s)}, {"role": "assistant", "content": s["output"]}]
    return turns + [{"role": "user", "content": format_prompt(record)}]


answers = {}
for name in ("base_bpe", "instruct_bpe"):
    model, tok = labkit.load_pretrained(name)[:2]
    answers[name] = [respond(model, tok, r, max_new_tokens=len(tok.encode(r["output"])) + 1) for r in questions]
start = time.perf_counter()
for k in (0, SHOTS):
    answers[f"SmolLM2-Instruct, {k}-shot"] = [
        chat(smol, smol_tok, messages(r, k), max_new_tokens=len(smol_tok.encode(r["output"])) + 4).strip() for r in questions]
print(f"{len(questions)} questions ({PER_TASK} of each of {', '.join(TASKS)}); SmolLM2 answered twice in "
      f"{time.perf_counter() - start:.0f} s")
for name, ans in answers.items():
    of = {task: [i for i, r in enumerate(questions) if r["task"] == task] for task in TASKS}
    by_task = ", ".join(f"{task} {exact_match([ans[i] for i in of[task]], [refs[i] for i in of[task]]):.0%}" for task in TASKS)
    print(f"  {name:<26} exact {exact_match(ans, refs):4.0%}  normalised {normalized_exact_match(ans, refs):4.0%}   ({by_task})")
""")
code(r"""
few = answers[f"SmolLM2-Instruct, {SHOTS}-shot"]
for task in TASKS:
    idx = [i for i, r in enumerate(questions) if r["task"] == task]
    print(f"[{task}] the shots' answers {[s['output'] for s in shots[task]]}; first question expects {refs[idx[0]]!r}")
    for name in ("instruct_bpe", "SmolLM2-Instruct, 0-shot", f"SmolLM2-Instruct, {SHOTS}-shot"):
        print(f"    {name:<26} {answers[name][idx[0]][:70]!r}")
    said, truth = Counter(few[i] for i in idx).most_common(3), Counter(refs[i] for i in idx).most_common(3)
    print(f"    {SHOTS}-shot answers, most common: {said}; the references: {truth}")
""")
md(r"""
**Reading it.** Zero-shot, SmolLM2 knows what it is asked but not *how this data set wants the answer*: it writes
a sentence ("This review is positive.") where the reference is one word, and exact match gives it nothing.
Three examples in the prompt teach the format with no training at all, and its score jumps, to about where
`instruct_bpe` stands, with a different profile per task (printed). Read the most common answers too: in
counting lines and in sentiment, SmolLM2's answers lean toward the answer most common among its three examples,
whatever the question: a known bias of few-shot prompting (Zhao et al. 2021, "Calibrate before use").
`instruct_bpe` learned the format and the tasks from 07c's thousands of training examples in minutes of
training; SmolLM2, which read trillions of tokens, gets its format from three, but not the tasks themselves. Chapter 07c's
widget lets you ask `instruct_bpe` your own questions; chapter 06d's lets you chat with SmolLM2.

## 8 · How many labels does each model need? (slider)

Only the logistic head is refitted on cached features, so the curves are computed once; the slider reads them.
Each point is the probe of section 3 (λ chosen on the validation reviews) fitted on the first n training reviews. Compare SmolLM2
with a handful of labels against the other two with all of them (printed): that is what "pretrained models need fewer
labels" means, measured.
""")
code(r"""
SIZES = [25, 50, 100, 250, 500, N_TRAIN]
curves = {name: [accuracy(probe(features[name], labels, n)[0], features[name]["test"], labels["test"]) for n in SIZES]
          for name in ("SmolLM2 linear probe", "base_bpe linear probe", "bag of words")}
print(f"SmolLM2's probe with {SIZES[0]} labels: {curves['SmolLM2 linear probe'][0]:.1%}; with all {N_TRAIN}, "
      f"base_bpe's probe {curves['base_bpe linear probe'][-1]:.1%} and the bag of words {curves['bag of words'][-1]:.1%}")
""", ["browser-setup"])
code(r"""
def show(n_labelled=100):
    fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    for name, accs in curves.items():
        line, = ax.plot(SIZES, accs, "o-", label=name)
        ax.plot([n_labelled], [accs[SIZES.index(n_labelled)]], "s", color=line.get_color(), markersize=10)
    ax.axhline(majority, ls=":", c="grey", label="多数类 majority class")
    ax.set_xscale("log")
    ax.set_xticks(SIZES, [str(n) for n in SIZES])
    ax.set_xlabel("标注评论数 labelled reviews")
    ax.set_ylabel("测试准确率 test accuracy")
    short = {"SmolLM2 linear probe": "SmolLM2", "base_bpe linear probe": "base_bpe", "bag of words": "词袋"}
    ax.set_title(f"{n_labelled} 条标注 labels: " + ", ".join(f"{short[name]} {accs[SIZES.index(n_labelled)]:.0%}"
                                                        for name, accs in curves.items()))
    ax.legend(loc="upper left", fontsize=8)
    plt.show()
""", ["browser-setup"])
code(r"""
# NBVAL_IGNORE_OUTPUT
interact(show, n_labelled=widgets.SelectionSlider(options=SIZES, value=100, description="labels"));
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

Then explain the measurement: (a) each adapted layer trains rank · (in + out) numbers, tiny beside its in · out,
and only 2 of 30 blocks are adapted; (b) LoRA trains about as much as one whole block; (c) the embedding matrix is
adapted too, and it is a quarter of the model.
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
explanation = ...  # TODO: "a", "b" or "c" (the explanations above)
check("07.14", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))
""")
code("""
result = summary("07e")
assert result.all_passed, "every exercise of 07e should pass in the solutions"
""" if SOLUTIONS else """
summary("07e")
""")

md(r"""
## Summary

- SmolLM2's frozen features, read by a regularised logistic regression, beat the bag of words and every `base_bpe`
  method by a wide margin on the same reviews: what trillions of tokens of pretraining are worth (section 5's table).
- A probe is a model too: fit it to convergence with a penalty chosen on validation data, not for a fixed number of epochs.
- Caching the states entering the top k blocks makes fine-tuning those blocks cheap on a CPU; start the head from the
  probe (LP-FT), since a new head damages the features first. At this size, LoRA, full fine-tuning of the top blocks and
  the probe land close together: read the differences against their intervals.
- Three solved examples in the prompt teach SmolLM2-Instruct 07c's answer format with no training; instruction tuning
  (07c) teaches format and task from thousands of examples.
- SmolLM2 knows little Chinese: a pretrained model is worth what its pretraining data held.

## 中文小结

本章把 SmolLM2-135M 放在课程自己的 `base_bpe` 旁边，在同样的英文影评、同样的窗口和划分上做情感分类。
线性探测要做对：对标准化的特征拟合带 L2 正则的逻辑回归直到收敛，正则强度 λ 在验证集上选择。
SmolLM2 的冻结特征远胜词袋模型和 `base_bpe` 的所有方法，这正是在数万亿词元上预训练的价值。
缓存进入第 30−k 个块的隐藏状态后，只微调最上面 k 个块（LoRA r=8 或全量）在 CPU 上也很快；
分类头应从线性探测的结果出发（先探测后微调，LP-FT），随机初始化的新分类头会先破坏特征。
在这个数据量下，LoRA、顶层全量微调和线性探测的差别很小，要对照置信区间来读。
在 07c 的问题上，SmolLM2-Instruct 零样本几乎得零分（格式不对），提示中给出三个示例后分数明显上升，
而指令微调（07c）从数千个例子中同时学会了格式和任务。SmolLM2 的中文能力有限：预训练模型的能力取决于它读过的数据。
""")
if SOLUTIONS:  # only what the exercises need: the header, the imports, the exercises
    first = next(i for i, c in enumerate(C) if c.cell_type == "markdown" and c.source.startswith("## Exercises"))
    last = next(i for i, c in enumerate(C) if c.cell_type == "markdown" and c.source.startswith("## Summary"))
    C = [nbf.v4.new_markdown_cell("# 07e · Solutions: fine-tuning a real LLM\n\nOne answer to each exercise of "
                                  "`07e_real_llm_finetuning.ipynb`, checked. Only what the exercises need runs here."),
         nbf.v4.new_code_cell("import torch\n\nimport labkit\nfrom labkit.exercises import check, summary\n"
                              "from labkit.finetune import apply_lora\nfrom labkit.llama import Llama, LlamaConfig\n\n"
                              "labkit.seed_everything(0)")] + C[first:last]
nb.cells = C
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
ROOT = pathlib.Path(__file__).resolve().parent.parent
if SOLUTIONS:
    nbf.write(nb, ROOT / "solutions" / "07e_real_llm_finetuning_solutions.ipynb")
else:
    nbf.write(nb, ROOT / "chapters" / "07e_real_llm_finetuning.ipynb")
