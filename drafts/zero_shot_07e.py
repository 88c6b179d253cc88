"""07e draft measurement: SmolLM2-Instruct zero-shot beside base_bpe / instruct_bpe, 07c's exact match, a seeded subset."""
import time

import torch

import labkit
from labkit.data import EXACT_MATCH_TASKS, load_instructions
from labkit.instruct import exact_match, format_prompt, normalized_exact_match, respond
from labkit.smollm2 import chat

N = 192  # all of them: SmolLM2 answered 20 in 6 s at load 0.7
scored = [r for r in load_instructions("test") if r["task"] in EXACT_MATCH_TASKS and r["lang"] == "en"]
keep = torch.randperm(len(scored), generator=torch.Generator().manual_seed(0))[:N].tolist()
records = [scored[i] for i in keep]
refs = [r["output"] for r in records]
print(f"{N} of {len(scored)} English exact-match test questions; tasks {sorted({r['task'] for r in records})}")
for name in ("base_bpe", "instruct_bpe"):
    model, tok = labkit.load_pretrained(name)[:2]
    answers = [respond(model, tok, r, max_new_tokens=len(tok.encode(r["output"])) + 1) for r in records]
    print(f"{name:<14} exact {exact_match(answers, refs):.0%}  normalized {normalized_exact_match(answers, refs):.0%}")
smol, smol_tok = labkit.load_smollm2(dtype=torch.bfloat16)
start = time.perf_counter()
answers = [chat(smol, smol_tok, format_prompt(r), max_new_tokens=len(smol_tok.encode(r["output"])) + 4).strip() for r in records]
print(f"SmolLM2-Instruct exact {exact_match(answers, refs):.0%}  normalized {normalized_exact_match(answers, refs):.0%}"
      f"  ({time.perf_counter() - start:.0f} s)")
for a, r in list(zip(answers, refs))[:5]:
    print(f"   {a!r} vs {r!r}")
