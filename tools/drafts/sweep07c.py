"""Sweep for 07c, mirroring the notebook's loop: python sweep07c.py CKPT_DIR_OR_RUN_PT "lr,batch,epochs[,n_train]" ..."""
import sys, time, math, copy, collections
import torch
sys.path.insert(0, '/work/main')
import labkit
from labkit.gpt import GPT, GPTConfig
from labkit.tokenizers import BPETokenizer
from labkit.data import load_instructions, EXACT_MATCH_TASKS
from labkit.instruct import InstructionCollator, instruction_loss, respond, IGNORE_INDEX, end_of_text_id

src = sys.argv[1]
if src.endswith(".pt"):
    run = torch.load(src, weights_only=True, map_location='cpu')
    base = GPT(GPTConfig(**run['config'])); base.load_state_dict(run['model']); base.eval()
    tok = BPETokenizer.load('/tmp/w/base_bpe.tokenizer.json')
else:
    base, tok, meta = labkit.load_pretrained("base_bpe")
print("threads", torch.get_num_threads(), flush=True)
train = load_instructions("train"); val = load_instructions("val"); test = load_instructions("test")
SCORED = [r for r in test if r["task"] in EXACT_MATCH_TASKS]
collator = InstructionCollator(tok, 256)

def grouped(lengths, B, g, group=16):
    order = torch.randperm(len(lengths), generator=g).tolist()
    batches = []
    for s in range(0, len(order), B * group):
        chunk = sorted(order[s:s + B * group], key=lambda i: lengths[i])
        batches += [chunk[k:k + B] for k in range(0, len(chunk), B)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

def score(m):
    t = time.perf_counter()
    hits = collections.defaultdict(list)
    for r in SCORED:
        a = respond(m, tok, r, max_new_tokens=len(tok.encode(r["output"])) + 1)
        hits[(r["task"], r["lang"])].append(a == r["output"]); hits["all"].append(a == r["output"])
    return {k: sum(v) / len(v) for k, v in hits.items()}, time.perf_counter() - t

if "--base" in sys.argv:
    res, dt = score(base); print(f"base: all {res['all']:.3f} ({dt:.0f}s)", flush=True)
for spec in [a for a in sys.argv[2:] if not a.startswith("--")]:
    parts = spec.split(","); LR, B, EPOCHS = float(parts[0]), int(parts[1]), float(parts[2])
    N = int(parts[3]) if len(parts) > 3 else len(train)
    tr = train[:N]
    lengths = [len(collator.row(r)[0]) for r in tr]
    labkit.seed_everything(0)
    model = copy.deepcopy(base).train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    spe = math.ceil(len(tr) / B); total = int(EPOCHS * spe); WARM = 20
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARM) * (1 - s / total))
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter(); step = 0
    while step < total:
        for batch in grouped(lengths, B, g):
            if step >= total: break
            xb, yb = collator([tr[i] for i in batch])
            loss = instruction_loss(model(xb), yb)
            opt.zero_grad(set_to_none=True); loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step(); step += 1
    secs = time.perf_counter() - t0
    model.eval()
    torch.save(model.state_dict(), f"/tmp/w/tuned_{spec.replace(',', '_')}.pt")
    for r in [r for r in SCORED if r["task"] == "speaker"][:6]:
        print("   speaker:", repr(r["output"]), "->", repr(respond(model, tok, r, max_new_tokens=12)), flush=True)
    res, dt = score(model)
    print(f"lr {LR:g} B {B} epochs {EPOCHS} N {N}: train {secs:.0f}s ({sum(lengths) * EPOCHS / secs:.0f} tok/s), "
          f"last loss {loss.item():.3f}; EM all {res['all']:.3f} ({dt:.0f}s) " +
          " ".join(f"{k[0]}/{k[1]} {v:.2f}" for k, v in sorted((k, v) for k, v in res.items() if k != 'all')), flush=True)
