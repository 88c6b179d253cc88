"""Builds chapters/07c_instruction_tuning.ipynb and its solutions notebook (nbformat).

    python /tmp/w/build_07c.py            # writes both notebooks (unexecuted)
    DEV_RUN_PT=/tmp/w/snap.run.pt python /tmp/w/build_07c.py   # prototype on a training-run snapshot
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


ROOT = Path("/work/main")

CHAPTER: list[tuple[str, str, list[str]]] = []
SOLUTIONS: list[tuple[str, str, list[str]]] = []


def md(text: str, into: list = CHAPTER) -> None:
    into.append(("md", text, []))


def code(text: str, tags: list[str] | None = None, into: list = CHAPTER) -> None:
    into.append(("code", text, tags or []))


# ============================================================================ chapter

md(r"""
# 07c · Project practice III, part 3: instruction tuning (指令微调)

Article 3 says what fine-tuning is for: "GPT模型最初是用于生成文本，但它可以通过微调被适应为机器翻译、问答系统等"
(a GPT is made to generate text, but fine-tuning adapts it to translation, question answering and so on).
In 07b we adapted our pretrained GPT by putting a new head on it: a classifier with two outputs, for one task.
Large language models are adapted differently. They keep their language-model head and learn, from examples
of *instructions and answers*, to answer when asked: **instruction tuning** (指令微调, also called supervised
fine-tuning, SFT). One model then does many tasks, each named in plain words in its prompt. This is what
turned GPT-3, which continues text, into InstructGPT and ChatGPT, which answer.

**What you will be able to do.** Read an instruction set in the Alpaca format (instruction, input, output);
see that a pretrained GPT, asked a question, only continues the text, and measure it (exact match on
held-out questions); build the training example by hand: the prompt template, the response followed by an
end marker, inputs and targets shifted by one, the prompt **masked** out of the loss (`-100`), and check it
against `labkit.instruct`; see why masking matters; fine-tune the whole model on 6 000 examples of
8 tasks in English and Chinese, with batches grouped by length so that little time goes into padding;
compare answers before and after, task by task; see with a temperature slider how sure the tuned model is;
and decide when to tune on instructions and when to train a classifier.

The notebook runs in about MINUTES on a 2-core CPU; a GPU, if you have one, is used automatically.
""")

code(r"""
import collections
import copy
import html
import math
import re
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import HTML, display
from ipywidgets import interact, widgets

import labkit
from labkit.data import EXACT_MATCH_TASKS, load_instructions
from labkit.exercises import check, summary
from labkit.instruct import (IGNORE_INDEX, InstructionCollator, collate_instructions, end_of_text_id,
                             format_prompt, instruction_loss, normalized_exact_match, respond)
from labkit.training import FitState

FULL_RUN = False  # True: train for 3 epochs instead of 1 (about three times as long)

labkit.seed_everything(0)  # the same numbers on every run (exactly, on the CPU)
device = labkit.get_device()
print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
""")

md(r"""
## 1 · The instruction set

No package ships an instruction-tuning set that a 6-million-parameter model could learn on a CPU in a few
minutes, so the course makes one from its own data (`datasets/build.py instructions`; `datasets/README.md`
says how). Each record has the three fields of Stanford's **Alpaca** set, `instruction`, `input` and
`output`, plus its `task` and language. Instructions are written from a handful of templates per task (four
wordings each), so the model has to read the instruction rather than learn one fixed phrase; inputs are
reviews, Shakespeare, *Moby-Dick* and Tang poems; outputs are computed from the input (a review's label, a
speaker's name, a count). The set teaches *format-following*, not knowledge: every short answer can be
read off the input. The three splits never share an input, and the test inputs come from parts of the
texts that the base model was not pretrained on.
""")

code(r"""
# NBVAL_CHECK_OUTPUT
splits = {split: load_instructions(split) for split in ("train", "val", "test")}
train_set, val_set, test_set = splits["train"], splits["val"], splits["test"]
PAIRS = sorted({(r["task"], r["lang"]) for r in train_set}, key=lambda p: (p[0] not in EXACT_MATCH_TASKS, p))
counts = {split: collections.Counter((r["task"], r["lang"]) for r in records) for split, records in splits.items()}
print(f"{'task':12}{'lang':>5}{'train':>7}{'val':>5}{'test':>6}   scored by")
for pair in PAIRS:
    scored = "exact match" if pair[0] in EXACT_MATCH_TASKS else "(free text)"
    print(f"{pair[0]:12}{pair[1]:>5}" + "".join(f"{counts[s][pair]:>{w}}" for s, w in
          (("train", 7), ("val", 5), ("test", 6))) + f"   {scored}")
print(f"{'all':17}{len(train_set):>7}{len(val_set):>5}{len(test_set):>6}")
""")

md(r"""
Six (task, language) pairs have one right answer, short enough to score by **exact match** (精确匹配): the
sentiment of a review (English `positive` / `negative`, Chinese `正面` / `负面`), who speaks first or second
in a passage of Shakespeare, how many lines a speech or a poem has, how many characters each line of a
poem has. Two are free text: continue a passage, and write the next line of a Tang poem. One record of each:
""")

code(r"""
def short(text, n=90):  # one line, at most n characters, for printing
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= n else text[: n - 1] + "…"


EXAMPLES = {pair: next(r for r in test_set if (r["task"], r["lang"]) == pair) for pair in PAIRS}
for (task, lang), r in EXAMPLES.items():
    print(f"[{task}, {lang}]  {r['instruction']}\n    input:  {short(r['input'])}\n    output: {short(r['output'])}")
""")

md(r"""
## 2 · Before: the base model does not answer

`labkit.load_pretrained("base_bpe")` is the course's pretrained GPT: 6 layers, 256 wide, 8 heads, a context
of 256 tokens, a byte-level BPE vocabulary of 4 096 tokens (06a) with one special token,
`<|endoftext|>`, and pretrained (06b) on Shakespeare, *Moby-Dick*, the Tang poems and the review texts.
It has never seen an instruction.
""")

code(r"""
base, tokenizer, meta = labkit.load_pretrained("base_bpe")
base = base.to(device)
END = end_of_text_id(tokenizer)  # the id of "<|endoftext|>": a response ends with it
config = base.config
print(f"base_bpe: {base.num_parameters():,} parameters, {config.n_layer} layers × {config.n_embd} wide, "
      f"{config.n_head} heads, block_size {config.block_size}, vocabulary {config.vocab_size:,}; "
      f"validation loss {meta['final_val_loss']:.3f}")
print(f"the end marker {tokenizer.decode([END])!r} is token {END}")
""")

md(r"""
We ask it the way we will ask the tuned model: the prompt template of section 3 (Alpaca's), and greedy
decoding (always the likeliest token) until the model writes the end marker or 40 new tokens.
`labkit.instruct.respond` does both. Here are its answers to the test records above:
""")

code(r"""
DEMO = [EXAMPLES[pair] for pair in PAIRS]
start = time.perf_counter()
base_demo = [respond(base, tokenizer, r, max_new_tokens=40) for r in DEMO]
for r, answer in zip(DEMO, base_demo):
    print(f"[{r['task']}, {r['lang']}] expected {short(r['output'], 40)!r}\n    base model: {short(answer, 100)!r}")
print(f"({time.perf_counter() - start:.1f} s)")
""")

md(r"""
It continues the text. After `### Response:` it writes something that looks like more of the prompt or more
of its training text, and it never writes the end marker, so every answer runs to the token limit. The
knowledge may be in there (06b's model had learned what a review or a poem looks like); the *behaviour* of
answering is not.

To measure it we score the 384 test records of the exact-match tasks: the model answers each (greedy, with
room for one token more than the reference answer: a longer answer could not equal it anyway), and an
answer counts if it equals the reference character for character. `normalized_exact_match` is a more lenient score: it ignores case,
punctuation and spaces, so `"Positive."` would count too.
""")

code(r"""
SCORED = [r for r in test_set if r["task"] in EXACT_MATCH_TASKS]


def answer_all(model, records):
    # greedy answers, at most one token longer than the reference (a longer answer cannot equal it)
    return [respond(model, tokenizer, r, max_new_tokens=len(tokenizer.encode(r["output"])) + 1) for r in records]


def exact_match_by_pair(answers, records):
    # {(task, lang): share of answers equal to the reference}, plus "all" over every record
    hits = collections.defaultdict(list)
    for answer, r in zip(answers, records):
        hits[r["task"], r["lang"]].append(answer == r["output"])
        hits["all"].append(answer == r["output"])
    return {key: sum(values) / len(values) for key, values in hits.items()}


start = time.perf_counter()
base_answers = answer_all(base, SCORED)
before = exact_match_by_pair(base_answers, SCORED)
base_lenient = normalized_exact_match(base_answers, [r["output"] for r in SCORED])
print(f"base model, {len(SCORED)} test questions in {time.perf_counter() - start:.0f} s: exact match "
      f"{before['all']:.1%}, normalized {base_lenient:.1%}")
assert before["all"] < 0.05, f"the base model should not answer in the expected form yet, got {before['all']:.1%}"
""")

md(r"""
Zero, however leniently we count. Is that only the format? The base model has never been asked to stop, so
an exact match is out of reach, but it could still *prefer* the right answer. One more honest test, for the
two sentiment tasks: after the prompt, which of the two label words does the base model find likelier as
the start of its response? If it had a sense of sentiment that the prompt could reach, it would pick the
right one more often than half the time.
""")

code(r"""
LABELS = {"en": ("positive", "negative"), "zh": ("正面", "负面")}


@torch.no_grad()
def answer_logprob(model, record, answer):
    # log p(answer's tokens | prompt): the sum over the answer's tokens, each given the ones before it
    prompt, ids = tokenizer.encode(format_prompt(record)), tokenizer.encode(answer)
    logits = model(torch.tensor([prompt + ids], device=device))[0, len(prompt) - 1:-1]  # (len(ids), V)
    return F.log_softmax(logits, dim=-1)[torch.arange(len(ids)), ids].sum().item()


def label_choice_accuracy(model, lang):
    records = [r for r in SCORED if r["task"] == "sentiment" and r["lang"] == lang]
    right = 0
    for r in records:
        scores = {label: answer_logprob(model, r, label) for label in LABELS[lang]}
        right += max(scores, key=scores.get) == r["output"]
    return right / len(records)


base_choice = {lang: label_choice_accuracy(base, lang) for lang in LABELS}
print("base model, sentiment as a choice between the two label words: " +
      ", ".join(f"{lang} {accuracy:.0%}" for lang, accuracy in base_choice.items()) + " (chance: 50%)")
""")

md(r"""
BASECHOICE_PROSE
""")

md(r"""
## 3 · The training example, by hand

### 3.1 The prompt template

An instruction-tuned model is always asked in the same layout, so that it can tell the instruction from the
input and knows where its answer starts. Alpaca's layout is three headed blocks; the Input block is left
out when there is no input. The response is the `output` followed by the end marker: the model must learn
to *stop*, and the end marker is how it says "done".
""")

code(r"""
example = next(r for r in train_set if r["task"] == "sentiment" and r["lang"] == "en" and len(r["input"]) < 90)


def prompt_by_hand(record):
    text = f"### Instruction:\n{record['instruction']}\n\n"
    if record["input"]:  # New: the Input block only when there is an input
        text += f"### Input:\n{record['input']}\n\n"
    return text + "### Response:\n"


assert prompt_by_hand(example) == format_prompt(example)
print(prompt_by_hand(example) + example["output"] + "<|endoftext|>")
""")

md(r"""
### 3.2 Inputs, targets, and the mask

Prompt and response are tokenized separately (so that no token straddles the border, as at answer time,
when the prompt is tokenized alone) and joined: `ids = prompt + response + [END]`. As in pretraining, the
model reads `x = ids[:-1]` and at every position predicts the next token, `y = ids[1:]`.

The difference from pretraining: we do not want to grade the model on predicting the *prompt*. It will
always be given the prompt; what it must learn is the response. So every target that is still part of the
prompt becomes `-100`, the value PyTorch's `F.cross_entropy` skips (`ignore_index=-100`, its default).
Those are the first `len(prompt) - 1` targets: position `len(prompt) - 1` holds the prompt's last token, and
its target is the response's first token, which *is* graded.
""")

code(r"""
prompt_ids = tokenizer.encode(prompt_by_hand(example))
response_ids = tokenizer.encode(example["output"]) + [END]
ids = prompt_ids + response_ids
x = torch.tensor(ids[:-1])                 # what the model reads
y = torch.tensor(ids[1:])                  # the next token at every position
y[: len(prompt_ids) - 1] = IGNORE_INDEX    # New: targets inside the prompt are not graded (-100)

print(f"{len(prompt_ids)} prompt tokens + {len(response_ids)} response tokens (with the end marker); "
      f"x and y: {len(x)} positions, {int((y != IGNORE_INDEX).sum())} of them graded\n")
print(f"{'position':>8}  {'x (reads)':14}  y (must predict next)")
for t in range(len(x) - 6, len(x)):
    target = "-100 (not graded)" if y[t] == IGNORE_INDEX else repr(tokenizer.decode([y[t].item()]))
    print(f"{t:>8}  {tokenizer.decode([x[t].item()])!r:14}  {target}")
""")

md(r"""
`labkit.instruct.collate_instructions` does the same for a list of records and pads them into one batch:
`x` is padded with the end marker's id, `y` with `-100`, so padding is never graded either. For our one
example it gives exactly our tensors:
""")

code(r"""
x_batch, y_batch = collate_instructions([example], tokenizer, block_size=config.block_size)
assert torch.equal(x_batch[0], x) and torch.equal(y_batch[0], y), "labkit's collate should match the tensors by hand"
print("collate_instructions gives the same x and y:", tuple(x_batch.shape))

pair = [example, EXAMPLES["speaker", "en"]]
x_pair, y_pair = collate_instructions(pair, tokenizer, block_size=config.block_size)
short_row = (x_pair[0] == END).sum().item()
print(f"two records in one batch: x {tuple(x_pair.shape)}; the shorter row ends in {short_row} padding "
      f"tokens, whose targets are -100: {bool((y_pair[0, -short_row:] == IGNORE_INDEX).all())}")
""")

md(r"""
### 3.3 Why mask the prompt?

Most of every example is prompt. On the validation records we count the tokens, and measure the base
model's loss on each part separately (one loss per token, `reduction="none"`, then averaged over the
prompt's tokens and over the response's):
""")

code(r"""
@torch.no_grad()
def loss_by_part(model, records, batch_size=64):
    # mean loss per token on the prompts and on the responses (+ end marker), and the token counts
    sums, counts = collections.Counter(), collections.Counter()
    records = sorted(records, key=lambda r: len(format_prompt(r)) + len(r["output"]))  # less padding
    for i in range(0, len(records), batch_size):
        xb, yb = collate_instructions(records[i: i + batch_size], tokenizer, config.block_size)
        targets = torch.cat([xb[:, 1:], torch.full((len(xb), 1), END)], dim=1)  # the next token everywhere
        first = (yb != IGNORE_INDEX).int().argmax(dim=1, keepdim=True)          # (B, 1): the first graded one
        parts = {"prompt": torch.arange(yb.shape[1]) < first, "response": yb != IGNORE_INDEX}  # (B, T) each
        losses = F.cross_entropy(model(xb.to(device)).transpose(1, 2).cpu(), targets, reduction="none")
        for name, where in parts.items():
            sums[name] += losses[where].sum().item()
            counts[name] += int(where.sum())
    return {name: sums[name] / counts[name] for name in sums}, counts


base_parts, token_counts = loss_by_part(base, val_set)
prompt_share = token_counts["prompt"] / (token_counts["prompt"] + token_counts["response"])
unmasked = prompt_share * base_parts["prompt"] + (1 - prompt_share) * base_parts["response"]
print(f"validation set: {token_counts['prompt']:,} prompt tokens ({prompt_share:.0%}), "
      f"{token_counts['response']:,} response tokens ({1 - prompt_share:.0%})")
print(f"base model, loss per token: prompt {base_parts['prompt']:.2f}, response {base_parts['response']:.2f}; "
      f"without the mask the loss would be {unmasked:.2f}")
""")

md(r"""
MASK_PROSE
""")

md(r"""
## 4 · Fine-tuning the whole model (全量微调)

### 4.1 Batches of similar length

A batch is one tensor, so its rows are padded to its longest row, and the model computes on the padding
too (the mask only keeps it out of the loss). Our records are 30 to 170 tokens long. Batches drawn at random
are padded to nearly the longest record; grouping records of similar length wastes much less. The usual
recipe keeps the shuffling: shuffle, cut the shuffled records into groups of 16 batches, sort each group by
length, cut it into batches, and shuffle the batches.
""")

code(r"""
collator = InstructionCollator(tokenizer, config.block_size)  # records -> (x, y), padded to the batch's longest row
lengths = [len(collator.row(r)[0]) for r in train_set]        # tokens per training row


def length_grouped_batches(lengths, batch_size, generator, group=16):
    # lists of record indices, records of similar length together; the batches in random order
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches = []
    for start in range(0, len(order), batch_size * group):
        chunk = sorted(order[start: start + batch_size * group], key=lambda i: lengths[i])
        batches += [chunk[k: k + batch_size] for k in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def padding_share(batches):  # the share of the computed positions that are padding
    computed = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return 1 - sum(lengths) / computed


BATCH_SIZE = 16
shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(1)).tolist()
random_batches = [shuffled[k: k + BATCH_SIZE] for k in range(0, len(shuffled), BATCH_SIZE)]
grouped = length_grouped_batches(lengths, BATCH_SIZE, torch.Generator().manual_seed(1))
assert sorted(i for batch in grouped for i in batch) == list(range(len(lengths)))  # every record, once
print(f"{len(lengths):,} rows, {min(lengths)} to {max(lengths)} tokens, {sum(lengths) / len(lengths):.0f} on average")
print(f"padding: random batches {padding_share(random_batches):.0%} of the computation, "
      f"grouped by length {padding_share(grouped):.1%}")
""")

md(r"""
### 4.2 The training loop

`labkit.fit` draws its batches at random from a dataset of equal-length rows; here every step takes the
next batch from our grouped list and pads it with `InstructionCollator`, so we write the loop out. It is the
loop of chapter 05 with the masked loss (`instruction_loss`, cross-entropy that skips `-100`), AdamW, a short
warm-up then a linear decay of the learning rate, and gradient clipping. `labkit.ProgressBar` draws the
progress bar: a callback only needs the `FitState` that `fit` would keep.

SETTINGS_PROSE
""")

code(r"""
EPOCHS = 3 if FULL_RUN else 1
LR, WARMUP_STEPS = 3e-4, 20
steps_per_epoch = math.ceil(len(train_set) / BATCH_SIZE)
total_steps, eval_every = EPOCHS * steps_per_epoch, steps_per_epoch // 3


def by_length(records):  # records sorted by length, so that evaluation batches need little padding
    return sorted(records, key=lambda r: len(format_prompt(r)) + len(r["output"]))


@torch.no_grad()
def response_loss(model, records, batch_size=64):  # the graded (masked) loss per response token
    was_training, total, count = model.training, 0.0, 0
    model.eval()
    records = by_length(records)
    for i in range(0, len(records), batch_size):
        xb, yb = collator(records[i: i + batch_size])
        n = int((yb != IGNORE_INDEX).sum())
        total += instruction_loss(model(xb.to(device)), yb.to(device)).item() * n
        count += n
    model.train(was_training)
    return total / count


def learning_rate_factor(step):  # warm-up over WARMUP_STEPS, then linear decay to 0
    return min(1.0, (step + 1) / WARMUP_STEPS) * (1 - step / total_steps)


print(f"{EPOCHS} epoch(s) of {steps_per_epoch} steps, batches of {BATCH_SIZE}, peak learning rate {LR:g}; "
      f"the validation loss every {eval_every} steps")
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
labkit.seed_everything(0)
tuned = copy.deepcopy(base).to(device).train()  # the base model stays as it was, for comparisons
optimizer = torch.optim.AdamW(tuned.parameters(), lr=LR, weight_decay=0.0)
schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor)
generator = torch.Generator().manual_seed(0)
state = FitState(tuned, optimizer, device, EPOCHS, steps_per_epoch, labkit.History(), has_validation=True)
progress = labkit.ProgressBar()
progress.on_fit_start(state)
step_losses, val_curve = [], [(0, base_parts["response"])]  # (step, validation loss); step 0 is the base model
start = time.perf_counter()
for state.epoch in range(EPOCHS):
    for batch in length_grouped_batches(lengths, BATCH_SIZE, generator):
        xb, yb = collator([train_set[i] for i in batch])              # (B, T) each, T = this batch's longest row
        loss = instruction_loss(tuned(xb.to(device)), yb.to(device))  # graded on the responses only
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tuned.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        state.step, state.loss = state.step + 1, loss.item()
        step_losses.append(state.loss)
        progress.on_batch_end(state)
        if state.step % eval_every == 0 or state.step == total_steps:
            val_curve.append((state.step, response_loss(tuned, val_set)))
    epoch_losses = step_losses[-steps_per_epoch:]
    state.history.append({"train_loss": sum(epoch_losses) / len(epoch_losses), "val_loss": val_curve[-1][1]})
    progress.on_epoch_end(state)
progress.on_fit_end(state)
tuned.eval()
train_seconds = time.perf_counter() - start
""")

code(r"""
window = 20
smooth = [sum(step_losses[max(0, i - window + 1): i + 1]) / len(step_losses[max(0, i - window + 1): i + 1])
          for i in range(len(step_losses))]
fig, ax = plt.subplots(figsize=(8, 3.4), layout="constrained")
ax.plot(range(1, len(step_losses) + 1), step_losses, color="tab:blue", alpha=0.25, lw=0.8, label="training batch")
ax.plot(range(1, len(step_losses) + 1), smooth, color="tab:blue", label=f"training, mean of {window} batches")
ax.plot(*zip(*val_curve), "o-", color="tab:orange", label="validation (all 512 records)")
ax.set(xlabel="step", ylabel="loss per response token", yscale="log",
       title=f"instruction tuning: {total_steps} steps in {train_seconds:.0f} s")
ax.grid(alpha=0.3)
ax.legend()
plt.show()
print(f"validation loss on the responses: {val_curve[0][1]:.2f} (base) -> {val_curve[-1][1]:.2f}; "
      f"{train_seconds:.0f} s, {sum(lengths) * EPOCHS / train_seconds:,.0f} tokens/s")
""")

md(r"""
CURVE_PROSE

## 5 · After: the same questions again
""")

code(r"""
tuned_demo = [respond(tuned, tokenizer, r, max_new_tokens=40) for r in DEMO]
cell = 'style="text-align:left; vertical-align:top; padding:3px 8px"'
rows = "".join(
    f"<tr><td {cell}>{r['task']}, {r['lang']}</td><td {cell}>{html.escape(short(r['instruction'] + ' ⏎ ' + r['input'], 70))}"
    f"</td><td {cell}><b>{html.escape(short(r['output'], 30))}</b></td><td {cell}>{html.escape(short(b, 40))}</td>"
    f"<td {cell}>{html.escape(short(t, 40))}</td></tr>" for r, b, t in zip(DEMO, base_demo, tuned_demo))
header = "".join(f"<th {cell}>{h}</th>" for h in ("task", "prompt", "expected", "base model", "instruction-tuned"))
display(HTML(f"<table><tr>{header}</tr>{rows}</table>"))
""")

code(r"""
start = time.perf_counter()
tuned_answers = answer_all(tuned, SCORED)
after = exact_match_by_pair(tuned_answers, SCORED)
tuned_lenient = normalized_exact_match(tuned_answers, [r["output"] for r in SCORED])
print(f"{len(SCORED)} test questions answered in {time.perf_counter() - start:.0f} s\n")
print(f"{'task':12}{'lang':>5}{'records':>9}{'before':>9}{'after':>8}   guessing would score")
GUESS = {("count_lines", "en"): 0.2}  # five possible counts; every other task has two likely answers
for pair in [p for p in PAIRS if p[0] in EXACT_MATCH_TASKS]:
    n = sum((r["task"], r["lang"]) == pair for r in SCORED)
    print(f"{pair[0]:12}{pair[1]:>5}{n:>9}{before[pair]:>9.0%}{after[pair]:>8.0%}   {GUESS.get(pair, 0.5):.0%}")
print(f"{'all':17}{len(SCORED):>9}{before['all']:>9.1%}{after['all']:>8.1%}")
print(f"\nlenient (normalized) exact match after tuning: {tuned_lenient:.1%}")
""")

code(r"""
pairs = [p for p in PAIRS if p[0] in EXACT_MATCH_TASKS]
fig, ax = plt.subplots(figsize=(9, 3.4), layout="constrained")
positions = torch.arange(len(pairs)).float()
ax.bar(positions - 0.2, [before[p] for p in pairs], 0.4, color="lightgrey", label="base model")
bars = ax.bar(positions + 0.2, [after[p] for p in pairs], 0.4, color="tab:green", label="instruction-tuned")
ax.bar_label(bars, [f"{after[p]:.0%}" for p in pairs], fontsize=9)
ax.hlines([GUESS.get(p, 0.5) for p in pairs], positions - 0.45, positions + 0.45, color="black",
          linestyles="dashed", lw=1, label="guessing")
ax.set_xticks(positions.tolist(), [f"{task}\n{lang}" for task, lang in pairs])
ax.set(ylim=(0, 1.1), ylabel="exact match (test)", title=f"held-out exact match: {before['all']:.0%} → {after['all']:.0%}")
ax.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
ax.legend(loc="upper left", fontsize=8)
plt.show()
""")

md(r"""
RESULTS_PROSE
""")

code(r"""
print(f"exact match on the {len(SCORED)} held-out questions: {before['all']:.1%} before, {after['all']:.1%} after")
assert after["all"] >= AFTER_MIN, (
    f"the instruction-tuned model should answer at least {AFTER_MIN:.0%} of the test questions exactly, got "
    f"{after['all']:.1%}: did you change a setting above? Restart the kernel and run all cells")
assert after["all"] - before["all"] >= GAIN_MIN, "instruction tuning should improve exact match by GAIN_POINTS points or more"
for pair in [p for p in PAIRS if p[0] in EXACT_MATCH_TASKS]:
    assert after[pair] > before[pair], f"{pair}: no better than before tuning ({after[pair]:.0%})"
""")
md(r"""
Two more views of the same change. The sentiment choice of section 2, asked again: which label word does
the tuned model find likelier? And the loss per token on the validation prompts and responses, before and
after: the responses were trained on, the prompts were not.
""")

code(r"""
tuned_choice = {lang: label_choice_accuracy(tuned, lang) for lang in LABELS}
print("sentiment as a choice between the label words: " + ", ".join(
    f"{lang} {base_choice[lang]:.0%} -> {tuned_choice[lang]:.0%}" for lang in LABELS))
tuned_parts, _ = loss_by_part(tuned, val_set)
for part in ("prompt", "response"):
    print(f"validation loss per {part} token: base {base_parts[part]:.2f}, tuned {tuned_parts[part]:.2f}")
""")

md(r"""
PARTS_PROSE

### 5.1 The free-text tasks

Exact match cannot score a continuation or a line of poetry: many answers are right. Two simple measures
instead. For `next_line`, the *form*: is the answer one line of Chinese characters, exactly as long as the
line it follows (5 or 7)? For `continue`, the loss of the reference continuation: how likely the model finds
what the author actually wrote next (lower is better; it says nothing about style or sense).
""")

code(r"""
NEXT_LINE = [r for r in test_set if r["task"] == "next_line"]
CONTINUE = [r for r in test_set if r["task"] == "continue"]


def right_form(answer, record):  # only Chinese characters, as many as in the line it follows
    return re.fullmatch(r"[\u4e00-\u9fff]+", answer) is not None and len(answer) == len(record["input"])


form, continue_loss = {}, {}
for name, model in (("base", base), ("tuned", tuned)):
    lines = [respond(model, tokenizer, r, max_new_tokens=16) for r in NEXT_LINE]
    form[name] = sum(right_form(line, r) for line, r in zip(lines, NEXT_LINE)) / len(NEXT_LINE)
    continue_loss[name] = response_loss(model, CONTINUE)
print(f"next_line, {len(NEXT_LINE)} test poems: the right form {form['base']:.0%} -> {form['tuned']:.0%}")
print(f"continue, {len(CONTINUE)} test passages: loss of the real continuation {continue_loss['base']:.2f} -> "
      f"{continue_loss['tuned']:.2f} per token")
for r in NEXT_LINE[:3] + CONTINUE[:2]:
    print(f"\n[{r['task']}] {short(r['input'], 70)}\n   the author: {short(r['output'], 70)}\n"
          f"   tuned:      {short(respond(tuned, tokenizer, r, max_new_tokens=40), 70)}")
""")

md(r"""
FREE_PROSE

## 6 · How sure is it? Try the temperature

An answer is a few tokens, so we can compute the probability that the model, sampling at temperature $T$
(06c), writes *exactly* a given answer and then stops: the product of the tempered probabilities of its
tokens and of the end marker. For each allowed answer of a test question, the bars show that probability
under the base model and the tuned one; "anything else" is what is left (any other text, or not stopping).
Chinese answers are labelled in pinyin (the figure's font may lack Chinese characters). Below the figure,
one answer sampled from each model at that temperature (seed 0).
""")

code(r"""
GLOSS = {"正面": "zhengmian\n(positive)", "负面": "fumian\n(negative)", "四": "si (4)", "八": "ba (8)",
         "五": "wu (5)", "七": "qi (7)"}
QUESTIONS = {f"{task}, {lang}": EXAMPLES[task, lang] for task, lang in PAIRS if task in EXACT_MATCH_TASKS}


def allowed_answers(record):
    task, lang = record["task"], record["lang"]
    if task == "sentiment":
        return list(LABELS[lang])
    if task == "speaker":  # the names that head a speech in the input
        return list(dict.fromkeys(re.findall(r"^([A-Z][A-Za-z ]*):$", record["input"], re.MULTILINE)))
    if task == "count_lines":
        return ["1", "2", "3", "4", "5"] if lang == "en" else ["四", "八"]
    return ["五", "七"]


@torch.no_grad()
def answer_probability(model, record, answer, temperature):
    # P(sampling at this temperature writes exactly `answer`, then the end marker)
    prompt, ids = tokenizer.encode(format_prompt(record)), tokenizer.encode(answer) + [END]
    logits = model(torch.tensor([prompt + ids[:-1]], device=device))[0, len(prompt) - 1:]  # (len(ids), V)
    return F.log_softmax(logits / temperature, dim=-1)[torch.arange(len(ids)), ids].sum().exp().item()
""")

code(r"""
def show_answers(temperature=1.0, question="sentiment, zh"):
    record = QUESTIONS[question]
    answers = allowed_answers(record)
    probs = {name: [answer_probability(model, record, a, temperature) for a in answers]
             for name, model in (("base", base), ("tuned", tuned))}
    labels = [GLOSS.get(a, a) + (" ✓" if a == record["output"] else "") for a in answers] + ["anything\nelse"]
    fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
    for offset, (name, colour) in zip((-0.2, 0.2), (("base", "lightgrey"), ("tuned", "tab:green"))):
        values = probs[name] + [max(0.0, 1 - sum(probs[name]))]
        bars = ax.bar([i + offset for i in range(len(values))], values, 0.4, color=colour,
                      label="base model" if name == "base" else "instruction-tuned")
        ax.bar_label(bars, [f"{v:.0%}" if v >= 0.005 else "" for v in values], fontsize=8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set(ylim=(0, 1.12), ylabel="probability",
           title=f"{question}: P(the answer, then stop) at temperature {temperature:.1f}; ✓ = the reference")
    ax.legend(loc="upper left", fontsize=8)
    plt.show()
    print(f"{record['instruction']}\n{short(record['input'], 110)}")
    for name, model in (("base", base), ("tuned", tuned)):
        sample = respond(model, tokenizer, record, max_new_tokens=12, temperature=temperature,
                         generator=torch.Generator().manual_seed(0))
        print(f"  {name:>5} samples: {short(sample, 80)!r}")


show_answers(1.0, "sentiment, zh")
""")

md(r"""
Now with a slider (it needs a running notebook). Things to try: lower the temperature on a question the
tuned model gets right, and watch the right answer take all the probability; raise it to 2 and see the
"anything else" bar grow, and the sampled answers break up. Which tasks is the tuned model unsure of even at
temperature 1? Does the base model ever put visible probability on an answer?
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
interact(show_answers,
         temperature=widgets.FloatSlider(1.0, min=0.1, max=2.0, step=0.1, continuous_update=False,
                                         description="temperature"),
         question=widgets.Dropdown(options=list(QUESTIONS), value="sentiment, zh", description="question"));
""", tags=["browser-test"])

md(r"""
## 7 · When to use which: instruction tuning or a classifier (07b)

The two ways of fine-tuning our GPT in this chapter, side by side, with this notebook's numbers:
""")

code(r"""
print(f"- one instruction-tuned model answers {len(PAIRS)} (task, language) pairs, named in words in the prompt; "
      f"it trained in {train_seconds:.0f} s, all {tuned.num_parameters():,} parameters")
print(f"- its held-out exact match: {after['all']:.0%} on the {len(SCORED)} short-answer questions "
      f"(from {before['all']:.0%}); sentiment {after['sentiment', 'en']:.0%} (en), {after['sentiment', 'zh']:.0%} (zh) "
      f"from {counts['train']['sentiment', 'en']} training examples per language")
print(f"- it also writes free text: next lines of the right form {form['tuned']:.0%} of the time")
""")

md(r"""
WHEN_PROSE

## Summary

SUMMARY_PROSE

## Exercises

Each exercise has a stub cell: replace `raise NotImplementedError` with your code and run the cell; the
check below it says ✓ or ✗ with a hint. Worked answers are in
`solutions/07c_instruction_tuning_solutions.ipynb`.

**07.7 One training pair.** Write `training_pair(prompt_ids, response_ids, end_id)` for one example, from
its prompt's token ids and its response's (lists of ints; the response *without* the end marker). Return
`(x, y)`, two 1-D tensors of token ids: the model reads `x`, and `y` holds the token it must predict next at
each position, with `-100` wherever that next token is still part of the prompt. Don't forget the end
marker: the model must learn to stop. Section 3.2 did this for one example; the check compares with
`labkit.instruct.InstructionCollator` on other examples.
""")

code(r"""
def training_pair(prompt_ids, response_ids, end_id):
    raise NotImplementedError  # TODO: (x, y) for one example, y = -100 where the next token is still the prompt

check("07.7", training_pair)
""")

md(r"""
**07.8 Answer, then stop.** Write `answer_ids(model, prompt_ids, end_id, max_new_tokens)`: the model's
greedy answer to a prompt (a list of token ids), as a list of the *new* token ids. At each step take the
likeliest next token after the last one; stop when the model writes `end_id` (and leave the marker out) or
after `max_new_tokens` new tokens, whichever comes first. `model(idx)` takes ids (1, T) and returns logits
(1, T, V). This is what `respond` does before it decodes the tokens. The check uses a tiny stand-in GPT whose
answers are known in advance (some stop at once, some never stop).
""")

code(r"""
def answer_ids(model, prompt_ids, end_id, max_new_tokens):
    raise NotImplementedError  # TODO: greedy answer tokens, without the prompt, stopped at the end marker

check("07.8", answer_ids)
""")

code(r"""
summary("07c")
""")


# ============================================================================ solutions

S = SOLUTIONS

md(r"""
# 07c · Solutions: instruction tuning

Worked answers to the exercises of `chapters/07c_instruction_tuning.ipynb`. Each answer is followed by its
check and a short demonstration on the course's pretrained GPT; the last cell asserts that all of them pass.
""", into=S)

code(r"""
import torch

import labkit
from labkit.data import load_instructions
from labkit.exercises import check, summary
from labkit.instruct import InstructionCollator, encode_example, end_of_text_id, format_prompt, respond

labkit.seed_everything(0)
base, tokenizer, meta = labkit.load_pretrained("base_bpe")
END = end_of_text_id(tokenizer)
test_set = load_instructions("test")
""", into=S)

md(r"""
**07.7 One training pair.** Join the three parts, then shift: `x` is everything but the last token, `y`
everything but the first. The first `len(prompt_ids) - 1` targets are prompt tokens (the target at
position `t` is token `t + 1`), so those become `-100`; the target at position `len(prompt_ids) - 1`, the
response's first token, stays. Without the end marker the model would never learn to stop.
""", into=S)

code(r"""
def training_pair(prompt_ids, response_ids, end_id):
    ids = list(prompt_ids) + list(response_ids) + [end_id]
    x = torch.tensor(ids[:-1])
    y = torch.tensor(ids[1:])
    y[: len(prompt_ids) - 1] = -100
    return x, y

check("07.7", training_pair)
""", into=S)

md(r"""
On a real record it gives what `labkit.instruct.InstructionCollator` gives (which encodes prompt and
response separately, as we do here):
""", into=S)

code(r"""
collator = InstructionCollator(tokenizer, block_size=base.config.block_size)
for record in test_set[:20]:
    prompt_ids = tokenizer.encode(format_prompt(record))
    x, y = training_pair(prompt_ids, tokenizer.encode(record["output"]), END)
    row_x, row_y = collator.row(record)
    assert x.tolist() == row_x and y.tolist() == row_y
print(f"the same (x, y) as InstructionCollator for 20 test records; the last one: {len(x)} positions, "
      f"{int((y != -100).sum())} graded")
""", into=S)

md(r"""
**07.8 Answer, then stop.** A greedy loop: the logits at the last position, their argmax, stop at the end
marker before appending it. `model.generate(idx, max_new_tokens, temperature=0, stop_tokens={end_id})`
followed by cutting at the first `end_id` is a correct answer too (`generate` also uses a KV cache).
""", into=S)

code(r"""
@torch.no_grad()
def answer_ids(model, prompt_ids, end_id, max_new_tokens):
    idx = torch.tensor([prompt_ids])
    answer = []
    for _ in range(max_new_tokens):
        next_id = int(model(idx)[0, -1].argmax())
        if next_id == end_id:
            break
        answer.append(next_id)
        idx = torch.cat([idx, torch.tensor([[next_id]])], dim=1)
    return answer

check("07.8", answer_ids)
""", into=S)

md(r"""
It answers as `labkit.instruct.respond` does. The base model never writes the end marker, so its answers
run to the limit; an instruction-tuned model (the chapter's `tuned`) stops after a few tokens.
""", into=S)

code(r"""
for record in test_set[:4]:
    mine = tokenizer.decode(answer_ids(base, tokenizer.encode(format_prompt(record)), END, 12))
    assert mine == respond(base, tokenizer, record, max_new_tokens=12)
    print(f"[{record['task']}] {mine!r}")
""", into=S)

code(r"""
result = summary("07c")
display(result)
assert result.all_passed, result.missing
""", into=S)



# Numbers measured on this CPU (see the report): the assertions' thresholds, with safety room.
SUBSTITUTIONS = {
    "AFTER_MIN": os.environ.get("AFTER_MIN", "0.60"),
    "GAIN_MIN": os.environ.get("GAIN_MIN", "0.50"),
    "GAIN_POINTS": os.environ.get("GAIN_POINTS", "50"),
}


def build(cells: list[tuple[str, str, list[str]]], path: Path) -> None:
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for kind, source, tags in cells:
        source = source.strip("\n")
        if kind == "md":
            cell = new_markdown_cell(source)
        else:
            cell = new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        n = len(source.splitlines())
        assert n <= 45, f"cell too long ({n} lines): {source[:80]}"
        nb.cells.append(cell)
    for key, value in SUBSTITUTIONS.items():
        for cell in nb.cells:
            cell.source = cell.source.replace(key, value)
    if os.environ.get("DEV_SUBSET"):  # prototype only: train on fewer records
        for cell in nb.cells:
            cell.source = cell.source.replace(
                "lengths = [len(collator.row(r)[0]) for r in train_set]",
                f"train_set = train_set[:{int(os.environ['DEV_SUBSET'])}]  # DEVELOPMENT ONLY\n"
                "lengths = [len(collator.row(r)[0]) for r in train_set]")
    dev = os.environ.get("DEV_RUN_PT")
    if dev:  # prototype only: load the training run's snapshot instead of the shipped checkpoint
        for cell in nb.cells:
            if cell.cell_type == "code" and 'labkit.load_pretrained("base_bpe")' in cell.source:
                cell.source = cell.source.replace(
                    'base, tokenizer, meta = labkit.load_pretrained("base_bpe")',
                    "# DEVELOPMENT ONLY\n"
                    f"_run = torch.load({dev!r}, weights_only=True, map_location='cpu')\n"
                    "base = labkit.GPT(labkit.GPTConfig(**_run['config'])); base.load_state_dict(_run['model']); base.eval()\n"
                    "tokenizer = labkit.BPETokenizer.load('/tmp/w/base_bpe.tokenizer.json')\n"
                    "meta = {'final_val_loss': _run['history']['val_loss'][-1], 'steps': _run['step']}")
    nbformat.validate(nb)
    nbformat.write(nb, path)
    print(f"wrote {path} ({len(nb.cells)} cells)")


if __name__ == "__main__":
    out = Path(os.environ.get("OUT_DIR", ROOT))
    build(CHAPTER, out / "chapters" / "07c_instruction_tuning.ipynb")
    build(SOLUTIONS, out / "solutions" / "07c_instruction_tuning_solutions.ipynb")
