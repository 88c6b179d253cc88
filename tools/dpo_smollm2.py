"""DPO, DPO + NLL and supervised fine-tuning of SmolLM2-135M-Instruct on the course's exact-answer questions.

The measurement behind issue 19's "DPO on SmolLM2-Instruct": too slow for a notebook on a 2-core CPU
(about 3 minutes to build the pairs, 1–2 minutes a run), so it is a command:

    python tools/dpo_smollm2.py                            # seed 0: DPO (β 0.1), DPO + NLL, SFT
    python tools/dpo_smollm2.py --seed 1 --runs dpo+nll sft
    python tools/dpo_smollm2.py --judge-samples 8         # only: how often its own samples are right
    python tools/dpo_smollm2.py --save checkpoints/smollm2_dpo   # seed 0, and keep what chapter 07d §9 loads

What it does, for each seed:

1. The held-out questions are chapter 07e's: 12 of each English exact-answer task of
   `datasets/instructions` (test split), asked zero-shot, answered greedily; the score is exact match.
2. Pairs: 32 training questions per task (seeded). SmolLM2 answers each greedily; where the exact-match
   judge rejects the answer, the pair is (chosen: the reference answer + <|im_end|>, rejected: its own
   reply). The pairs and the states entering block 30 − K are cached in build/dpo_smollm2/.
3. LoRA (r 8 on every linear layer) on the top K = 4 blocks only; the states below are computed once
   (chapter 07e's trick), so a step runs 4 of 30 blocks. The reference log-probabilities are the
   untouched model's.
4. Runs: "dpo" (labkit.align.dpo_loss), "dpo+nll" (DPO plus the chosen answer's mean token NLL,
   as in RPO, Pang et al. 2024), "sft" (the NLL alone: supervised fine-tuning on the chosen answers).
   Then the held-out questions again, with the tuned top blocks.

It prints, per run, the drift of log π − log π_ref on chosen and rejected answers after each epoch:
DPO's known failure, both going down or the rejected one collapsing, shows there.

The runs of one command share a process and its random generator: each LoRA's initial A matrices are
drawn after the previous runs' draws, so a run's score depends on its place in --runs (SFT alone at
seed 0 measured 41.7%; after dpo and dpo+nll, 33.3%). Compare runs of the same command line.

``--save DIR`` writes each run's LoRA adapters (``DIR/<run>.safetensors``, `labkit.finetune.save_adapters`)
and ``DIR/meta.json``: the command, the settings, the pairs, each run's training seconds, drift per epoch and
held-out exact match. Chapter 07d §9 loads the adapters into SmolLM2 and scores them again.

``--judge-samples G`` measures instead what GRPO, or DPO on pairs of the model's own samples, would
have to learn from: G answers sampled (temperature 1) to each training question, and how many the
exact-match judge accepts (about 7 minutes for G = 8 here).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import labkit  # noqa: E402
from labkit.align import dpo_loss, pack_responses  # noqa: E402
from labkit.data import exact_match_questions  # noqa: E402
from labkit.finetune import apply_lora, save_adapters  # noqa: E402
from labkit.instruct import exact_match, format_prompt, normalized_exact_match  # noqa: E402

CACHE_DIR = ROOT / "build" / "dpo_smollm2"
TOP_K, HELD_OUT_PER_TASK = 4, 12
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_RANK, LORA_ALPHA, BATCH = 8, 16, 8
RUNS = {"dpo": (0.1, 0.0), "dpo+nll": (0.1, 1.0), "sft": (0.0, 1.0)}  # name → (β, NLL weight)


def questions(seed: int, per_task: int) -> tuple[list[dict], list[dict], list[str]]:
    """(held-out questions: 07e's, training questions: `per_task` of each task, seeded; the tasks)."""
    held_out = exact_match_questions("test", HELD_OUT_PER_TASK, seed=0)           # 07e's generator and order
    train = exact_match_questions("train", per_task, seed=100 + seed)
    return held_out, train, sorted({r["task"] for r in held_out})


def judge_samples(smol: nn.Module, train: list[dict], tasks: list[str], reply: Callable, tok, end: int, G: int) -> None:
    """Print, per task, how many of G sampled answers (temperature 1) per question are exactly right, and how
    many questions got at least one: only those give GRPO a group with an advantage, or DPO an on-policy pair.
    reply(model, question, max_new, temperature) answers with token ids, `end` (<|im_end|>) last if it stopped."""
    start = time.perf_counter()
    right: dict[str, list[int]] = {task: [] for task in tasks}                 # per question: answers right of G
    for r in train:
        max_new = len(tok.encode(r["output"])) + 4
        answers = [tok.decode([t for t in reply(smol, r, max_new, 1.0) if t != end]).strip() for _ in range(G)]
        right[r["task"]].append(sum(answer == r["output"] for answer in answers))
    print(f"{len(train)} training questions × {G} sampled answers (temperature 1): "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    for task, hits in [*right.items(), ("all", [h for of in right.values() for h in of])]:
        print(f"  {task}: {sum(hits)}/{G * len(hits)} answers exactly right ({sum(hits) / (G * len(hits)):.1%}); "
              f"questions with at least one: {sum(h > 0 for h in hits)}/{len(hits)}", flush=True)


class TopBlocks(nn.Module):
    """The top `k` blocks of a Llama (copied, to train) on cached states entering them, with the
    model's own final norm and head (frozen): response log-probabilities from those states."""

    def __init__(self, llama: nn.Module, k: int) -> None:
        super().__init__()
        self.llama = [llama]  # not a submodule: its weights stay out of this module's parameters
        self.blocks = copy.deepcopy(llama.blocks[-k:])

    def logp(self, x: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """States (B, T, C) entering the top blocks, ids (B, T), mask (B, T) → log π(response) (B,)."""
        llama = self.llama[0]
        cos, sin = llama.rotary(0, x.shape[1], x.dtype)
        for block in self.blocks:
            x = block(x, cos, sin)
        graded = mask[:, 1:]                                   # position t predicts token t + 1
        h = llama.norm(x)[:, :-1][graded]                      # (n, C): only where a response token is next
        logp = F.log_softmax(llama.lm_head(h), dim=-1).gather(-1, ids[:, 1:][graded][:, None])[:, 0]
        rows = torch.arange(len(ids))[:, None].expand_as(graded)[graded]
        return torch.zeros(len(ids)).index_add(0, rows, logp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="which training questions, and the batch order")
    parser.add_argument("--per-task", type=int, default=32, help="training questions per task (default 32)")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--save", type=Path, metavar="DIR",
                        help="write each run's adapters (DIR/<run>.safetensors) and DIR/meta.json (chapter 07d §9)")
    parser.add_argument("--judge-samples", type=int, default=0, metavar="G",
                        help="only sample G answers to each training question and count those the judge accepts")
    args = parser.parse_args(argv)
    if args.judge_samples < 0:
        parser.error(f"--judge-samples must be ≥ 0, got {args.judge_samples}")
    if args.save and sorted(args.runs) != sorted(RUNS):
        parser.error(f"--save writes what chapter 07d §9 loads, all three runs; got --runs {' '.join(args.runs)}: "
                     "leave --runs out")
    labkit.seed_everything(args.seed)
    smol, tok = labkit.load_smollm2(dtype=torch.float32)
    for p in smol.parameters():
        p.requires_grad_(False)
    end = tok.token_id("<|im_end|>")
    cut = smol.config.n_layer - TOP_K
    held_out, train, tasks = questions(args.seed, args.per_task)

    def prompt_ids(r: dict) -> list[int]:
        chat = [{"role": "user", "content": format_prompt(r)}]
        return tok.encode(tok.apply_chat_template(chat, add_generation_prompt=True))

    @torch.no_grad()
    def reply(model: nn.Module, r: dict, max_new: int, temperature: float = 0.0) -> list[int]:  # with <|im_end|> if it stopped
        out = []
        for t in model.stream(torch.tensor([prompt_ids(r)]), max_new, temperature=temperature, stop_token=end):
            out.append(t)
            if t == end:
                break
        return out

    def score(model: nn.Module, name: str) -> float:
        start = time.perf_counter()
        answers = [tok.decode([t for t in reply(model, r, len(tok.encode(r["output"])) + 4) if t != end]).strip()
                   for r in held_out]
        refs = [r["output"] for r in held_out]
        of = {task: [i for i, r in enumerate(held_out) if r["task"] == task] for task in tasks}
        by_task = ", ".join(f"{task} {exact_match([answers[i] for i in of[task]], [refs[i] for i in of[task]]):.0%}"
                            for task in tasks)
        print(f"{name}: exact match {exact_match(answers, refs):.1%}, normalised {normalized_exact_match(answers, refs):.1%} "
              f"({by_task}); {time.perf_counter() - start:.0f} s; first answers {answers[:3]}", flush=True)
        return exact_match(answers, refs)

    if args.judge_samples:
        judge_samples(smol, train, tasks, reply, tok, end, args.judge_samples)
        return 0

    cache = CACHE_DIR / f"seed{args.seed}_per{args.per_task}.pt"
    if cache.exists():
        stored = torch.load(cache, weights_only=True)  # our own cache: tensors, tuples and an int
        data, n_questions = stored["data"], stored["n_questions"]
        print(f"seed {args.seed}: {len(data)} pairs from {cache}", flush=True)
    else:
        score(smol, f"seed {args.seed}, before")
        start, data = time.perf_counter(), []
        for r in train:
            rejected = reply(smol, r, 16)
            if tok.decode([t for t in rejected if t != end]).strip() == r["output"]:
                continue  # the judge accepts the model's own answer: no pair
            prompt = prompt_ids(r)
            ids, mask = pack_responses([prompt, prompt], [tok.encode(r["output"]) + [end], rejected], end)
            with torch.no_grad():
                data.append((smol.hidden_states_entering(ids, cut), ids, mask))
        n_questions = len(train)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        torch.save({"data": data, "n_questions": n_questions}, cache)
        print(f"{len(data)} pairs from {n_questions} training questions in {time.perf_counter() - start:.0f} s; e.g. "
              f"chosen {tok.decode(data[0][1][0][data[0][2][0]].tolist())!r}, "
              f"rejected {tok.decode(data[0][1][1][data[0][2][1]].tolist())!r}", flush=True)

    records = []
    for name in args.runs:
        beta, nll = RUNS[name]
        policy = TopBlocks(smol, TOP_K)
        with torch.no_grad():
            reference = torch.stack([policy.logp(*d) for d in data])           # (P, 2): chosen, rejected
        apply_lora(policy.blocks, targets=LORA_TARGETS, rank=LORA_RANK, alpha=LORA_ALPHA)
        params = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
        generator = torch.Generator().manual_seed(args.seed)
        start, drifts = time.perf_counter(), []
        for epoch in range(args.epochs):
            for rows in torch.randperm(len(data), generator=generator).split(BATCH):
                logp = torch.stack([policy.logp(*data[i]) for i in rows.tolist()])   # (B, 2)
                loss = torch.zeros(())
                if beta > 0:
                    loss = dpo_loss(logp[:, 0], logp[:, 1], reference[rows, 0], reference[rows, 1], beta)[0]
                if nll > 0:
                    lengths = torch.stack([data[i][2][0].sum() for i in rows.tolist()])
                    loss = loss - nll * (logp[:, 0] / lengths).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                drift = torch.stack([policy.logp(*d) for d in data]) - reference
            drifts.append([round(drift[:, 0].mean().item(), 4), round(drift[:, 1].mean().item(), 4)])
            print(f"  {name} epoch {epoch + 1}: log π − log π_ref, chosen {drift[:, 0].mean():+.2f}, "
                  f"rejected {drift[:, 1].mean():+.2f}", flush=True)
        tuned = copy.deepcopy(smol)
        for i, block in enumerate(policy.blocks):
            tuned.blocks[cut + i] = block
        seconds = time.perf_counter() - start
        held_out_score = score(tuned, f"seed {args.seed}, {name} (lr {args.lr:g}, {args.epochs} epochs, {seconds:.0f} s)")
        records.append(dict(run=name, beta=beta, nll_weight=nll, training_seconds=round(seconds, 1),
                            drift_per_epoch=drifts, held_out_exact_match=held_out_score,
                            adapters=f"{name.replace('+', '_')}.safetensors"))
        if args.save:
            save_adapters(tuned, args.save / records[-1]["adapters"])
    if args.save:
        meta = dict(command="python tools/dpo_smollm2.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    seed=args.seed, per_task=args.per_task, pairs=len(data), training_questions=n_questions,
                    held_out_per_task=HELD_OUT_PER_TASK, top_blocks=TOP_K, lora=dict(targets=list(LORA_TARGETS),
                    rank=LORA_RANK, alpha=LORA_ALPHA), lr=args.lr, epochs=args.epochs, batch_size=BATCH, runs=records,
                    torch=torch.__version__, threads=torch.get_num_threads())
        (args.save / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        print(f"adapters and meta.json in {args.save}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
