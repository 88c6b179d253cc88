"""Prototype for 07c: python proto07c.py RUN_PT N_TRAIN EPOCHS LR BATCH [eval_n]"""
import sys, time, math, random, collections
import torch, torch.nn.functional as F
sys.path.insert(0, '/work/main')
import labkit
from labkit.gpt import GPT, GPTConfig
from labkit.tokenizers import BPETokenizer
from labkit.data import load_instructions, EXACT_MATCH_TASKS
from labkit.instruct import InstructionCollator, instruction_loss, respond, exact_match, normalized_exact_match, IGNORE_INDEX

run_pt, N, EPOCHS, LR, B = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
EVAL_N = int(sys.argv[6]) if len(sys.argv) > 6 else 10**9
AUTOCAST = len(sys.argv) > 7 and sys.argv[7] == "bf16"
tok = BPETokenizer.load(sys.argv[8] if len(sys.argv) > 8 else '/tmp/w/base_bpe.tokenizer.json')
run = torch.load(run_pt, weights_only=True, map_location='cpu')
model = GPT(GPTConfig(**run['config'])); model.load_state_dict(run['model']); model.eval()
torch.manual_seed(0)
train = load_instructions("train")[:N]
test = [r for r in load_instructions("test") if r["task"] in EXACT_MATCH_TASKS][:EVAL_N]
collate = InstructionCollator(tok, 256)
rows = [collate.row(r) for r in train]

def batches(rows, B, g):
    perm = torch.randperm(len(rows), generator=g).tolist()
    chunk = B * 16
    out = []
    for i in range(0, len(perm), chunk):
        part = sorted(perm[i:i + chunk], key=lambda j: len(rows[j][0]))
        out += [part[k:k + B] for k in range(0, len(part), B)]
    order = torch.randperm(len(out), generator=g).tolist()
    return [out[o] for o in order]

def pad(idx):
    T = max(len(rows[j][0]) for j in idx)
    x = torch.full((len(idx), T), collate.pad_id); y = torch.full((len(idx), T), IGNORE_INDEX)
    for i, j in enumerate(idx):
        x[i, :len(rows[j][0])] = torch.tensor(rows[j][0]); y[i, :len(rows[j][1])] = torch.tensor(rows[j][1])
    return x, y

def score(m, recs):
    t = time.perf_counter()
    preds = [respond(m, tok, r, max_new_tokens=8) for r in recs]
    per = collections.defaultdict(list)
    for p, r in zip(preds, recs):
        per[(r["task"], r["lang"])].append(p.strip() == r["output"])
    res = {k: sum(v) / len(v) for k, v in sorted(per.items())}
    return exact_match(preds, [r["output"] for r in recs]), normalized_exact_match(preds, [r["output"] for r in recs]), res, time.perf_counter() - t, preds

em, nem, res, dt, preds = score(model, test)
print(f"before: EM {em:.3f} NEM {nem:.3f} ({dt:.1f}s)", {k: round(v, 2) for k, v in res.items()}, flush=True)
print([p for p in preds[:6]])
g = torch.Generator().manual_seed(0)
opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
n_batches = math.ceil(len(rows) / B)
total = int(EPOCHS * n_batches)
warm = max(1, total // 20)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / warm) * max(0.0, (total - s) / max(1, total - warm)) if s >= warm else (s + 1) / warm)
step = 0; t0 = time.perf_counter(); tokens = 0
model.train()
losses = []
while step < total:
    for idx in batches(rows, B, g):
        if step >= total: break
        x, y = pad(idx)
        tokens += x.numel()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=AUTOCAST):
            logits = model(x)
        loss = instruction_loss(logits.float(), y)
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); step += 1
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"step {step}/{total} loss {sum(losses[-50:]) / 50:.3f} {time.perf_counter() - t0:.0f}s {tokens / (time.perf_counter() - t0):.0f} tok/s", flush=True)
train_s = time.perf_counter() - t0
model.eval()
em, nem, res, dt, preds = score(model, test)
print(f"after ({train_s:.0f}s train): EM {em:.3f} NEM {nem:.3f} ({dt:.1f}s)", {k: round(v, 2) for k, v in res.items()}, flush=True)
