"""Chapter 07e: SmolLM2's top blocks run from cached hidden states, and the checks 07.12-07.14."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from labkit.llama import Llama, LlamaConfig
from notebook_cells import code_cells as _code_cells

CHAPTER = Path(__file__).resolve().parent.parent / "chapters" / "07e_real_llm_finetuning.ipynb"
TINY = LlamaConfig(vocab_size=97, block_size=64, n_layer=5, n_embd=48, n_head=6, n_kv_head=2, n_hidden=96)


def _tiny() -> Llama:
    torch.manual_seed(0)
    return Llama(TINY).eval()


@pytest.mark.parametrize("block", [0, 1, 3, 5])
def test_top_blocks_from_cached_states_equal_the_full_forward(block: int) -> None:
    model = _tiny()
    idx = torch.randint(0, TINY.vocab_size, (3, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cached = model.hidden_states_entering(idx, block)
        assert cached.shape == (3, 17, TINY.n_embd)
        assert torch.allclose(model.hidden_states_from(cached, block), model.hidden_states(idx), atol=1e-6)


def test_states_entering_block_zero_are_the_embeddings_and_the_last_are_before_the_norm() -> None:
    model = _tiny()
    idx = torch.randint(0, TINY.vocab_size, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model.hidden_states_entering(idx, 0), model.embed(idx))
        last = model.hidden_states_entering(idx, TINY.n_layer)
        assert torch.allclose(model.norm(last), model.hidden_states(idx), atol=1e-6)
        assert not torch.allclose(model.hidden_states_entering(idx, 2), model.hidden_states_entering(idx, 3))


def test_gradients_reach_only_the_top_blocks() -> None:
    model = _tiny()
    idx = torch.randint(0, TINY.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        cached = model.hidden_states_entering(idx, 3)
    model.hidden_states_from(cached, 3).sum().backward()
    assert all(p.grad is None for p in model.blocks[:3].parameters())
    assert all(p.grad is not None for p in model.blocks[3:].parameters())


def test_bad_block_and_bad_states_get_clear_errors() -> None:
    model = _tiny()
    idx = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"block must be in 0 … 5.*got 6"):
        model.hidden_states_entering(idx, 6)
    with pytest.raises(ValueError, match=r"block must be in 0 … 5.*got -1"):
        model.hidden_states_from(torch.zeros(1, 4, TINY.n_embd), -1)
    with pytest.raises(ValueError, match=r"shape \(B, T, 48\).*\(1, 4\)"):
        model.hidden_states_from(torch.zeros(1, 4), 2)
    with pytest.raises(ValueError, match="integer token ids"):
        model.hidden_states_entering(torch.zeros(1, 4), 2)


def test_lora_count_reference_equals_apply_lora_on_real_blocks() -> None:
    from labkit.course.checks import ch07e
    from labkit.finetune import apply_lora

    model = _tiny()
    top = model.blocks[-2:]
    apply_lora(top, targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), rank=4)
    trained = sum(p.numel() for p in top.parameters() if p.requires_grad)
    assert trained == ch07e._reference_lora_parameters(TINY, 2, 4)


def test_the_share_trained_uses_smollm2s_true_parameter_count() -> None:
    from labkit.course.checks import ch07e

    config = LlamaConfig()
    with torch.device("meta"):
        total = Llama(config).num_parameters()
    assert abs(ch07e._share_trained() - 100 * ch07e._reference_lora_parameters(config, 2, 8) / total) < 1e-9


# --------------------------------------------------------------------------- the notebook


def _notebook_function(name: str) -> dict:
    """Run the notebook's cell that defines `name` (with the imports it needs) and return its namespace."""
    import torch.nn.functional as F
    from torch import nn

    source = next(c for c in _code_cells(CHAPTER) if f"def {name}(" in c)
    namespace = {"torch": torch, "F": F, "nn": nn}
    exec(compile(source, f"<07e: {name}>", "exec"), namespace)
    return namespace


def test_the_probe_equals_scikit_learns_l2_logistic_regression() -> None:
    """07e's fit_probe (softmax over 2 classes, λ‖W‖² on standardised features, the standardisation folded
    into an nn.Linear on raw features) is sklearn's LogisticRegression with C = 1 / (λ N): at the optimum the
    two class columns are opposite, so λ‖W‖² is λ/2 ‖w₁ − w₀‖²."""
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    z = torch.randn(300, 12, generator=g)
    x = z * torch.linspace(0.5, 20, 12) + torch.linspace(-5, 5, 12)   # features of unequal scales and means
    y = (z[:, :3].sum(1) + 0.8 * torch.randn(300, generator=g) > 0).long()
    fit_probe = _notebook_function("fit_probe")["fit_probe"]
    for lam in (1e-3, 1e-1):
        head = fit_probe(x, y, lam)
        with torch.no_grad():
            ours = torch.softmax(head(x), dim=1)[:, 1]
        xs = ((x - x.mean(0)) / (x.std(0) + 1e-6)).double().numpy()
        sklearn = LogisticRegression(C=1 / (lam * len(x)), tol=1e-10, max_iter=10_000).fit(xs, y.numpy())
        theirs = torch.from_numpy(sklearn.predict_proba(xs)[:, 1])
        assert torch.allclose(ours.double(), theirs, atol=1e-4), (lam, (ours.double() - theirs).abs().max())


def test_the_label_slider_starts_where_it_can_move_right() -> None:
    """The browser test presses ArrowRight on the widget's first slider and waits for a redraw: a slider
    that starts on its last option cannot move (CI at 7389d61 failed so). Its slice runs in the browser test."""
    source = next(c for c in _code_cells(CHAPTER) if "interact(show" in c)
    sizes = next(c for c in _code_cells(CHAPTER) if c.startswith("SIZES = "))
    assert "value=100" in source and "SIZES = [25, 50, 100, 250, 500, N_TRAIN]" in sizes
