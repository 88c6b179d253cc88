import sys, time, copy, torch
sys.path.insert(0, '/work/main')
import labkit
from labkit.data import load_instructions
from labkit.instruct import InstructionCollator, instruction_loss
base, tok, meta = labkit.load_pretrained("base_bpe")
train = load_instructions("train")
col = InstructionCollator(tok, 256)
rows = sorted(train[:2000], key=lambda r: len(r["input"]))[800:1400]  # middle lengths
for B in (16, 32):
    for trick in (False, True):
        m = copy.deepcopy(base).train(); opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        batches = [col(rows[i:i+B]) for i in range(0, len(rows), B)][:12]
        n = 0; t = time.perf_counter()
        for k, (x, y) in enumerate(batches):
            if k == 2: t = time.perf_counter(); n = 0
            if trick:
                h = m.hidden_states(x); g = y != -100
                loss = torch.nn.functional.cross_entropy(m.lm_head(h[g]), y[g])
            else:
                loss = instruction_loss(m(x), y)
            opt.zero_grad(); loss.backward(); opt.step(); n += x.numel()
        dt = time.perf_counter() - t
        print(f"B {B} trick {trick}: {n/dt:.0f} tok/s (T~{x.shape[1]})", flush=True)
