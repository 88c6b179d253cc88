"""python sweep.py RUN_PT lang N EPOCHS BATCH 'method:lr:pool' ..."""
import copy, sys, time
import torch
from torch.utils.data import TensorDataset
sys.path.insert(0, '.')
import labkit
from labkit.gpt import GPT, GPTConfig
from labkit.tokenizers import BPETokenizer
from labkit.data import load_reviews
from labkit.finetune import GPTClassifier, encode_batch, freeze, unfreeze, apply_lora, parameter_counts
tok = BPETokenizer.load('checkpoints/base_bpe/tokenizer.json'); PAD = tok.special_tokens['<|endoftext|>']
run = torch.load(sys.argv[1], weights_only=True, map_location='cpu')
base = GPT(GPTConfig(**run['config'])); base.load_state_dict(run['model']); base.eval()
lang, N, EPOCHS, BATCH = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def data(split, n=None):
    t, l = load_reviews(lang, split)
    if n:
        idx = torch.randperm(len(t), generator=torch.Generator().manual_seed(0))[:n].tolist(); t = [t[i] for i in idx]; l = [l[i] for i in idx]
    return encode_batch(tok, t, int(__import__('os').environ.get('BLOCK', 64)), PAD), torch.tensor(l)
xtr, ytr = data('train', N); xte, yte = data('test'); xva, yva = data('val')
def acc(model, xte=xte, yte=yte):
    model.eval(); order = (xte != PAD).sum(1).argsort(); c = 0
    with torch.no_grad():
        for i in range(0, len(xte), 256):
            b = order[i:i+256]; c += (model(xte[b]).argmax(1) == yte[b]).sum().item()
    return c / len(xte)
for spec in sys.argv[6:]:
    method, lr, pool = spec.split(':'); lr = float(lr)
    torch.manual_seed(0)
    if method == 'scratch': clf = GPTClassifier(GPT(base.config), 2, PAD, pooling=pool)
    else: clf = GPTClassifier(copy.deepcopy(base), 2, PAD, pooling=pool)
    if method.startswith('lora'):
        r_, _, a_ = method[4:].partition('a'); apply_lora(clf, targets=tuple(__import__('os').environ.get('TARGETS', 'c_attn,c_proj,c_fc').split(',')), rank=int(r_ or 8), alpha=float(a_ or 16)); unfreeze(clf, 'head')
        if __import__('os').environ.get('LN'): unfreeze(clf, ['gpt.transformer.h.*.ln_*', 'gpt.transformer.ln_f'])
    t0 = time.perf_counter()
    h = labkit.fit(clf, TensorDataset(xtr, ytr), epochs=EPOCHS, lr=lr, batch_size=BATCH, optimizer='adamw', seed=0, verbose=False)
    s = time.perf_counter() - t0
    print(f"{lang} N={N} ep={EPOCHS} b={BATCH} {method:8s} lr={lr:g} {pool}: val {acc(clf, xva, yva):.3f} test {acc(clf):.3f} train_loss {h[list(h)[0]][-1]:.3f} {s:.0f}s", flush=True)
