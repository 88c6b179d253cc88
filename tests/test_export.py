"""labkit.export: the course GPT written as a Hugging Face GPT-2 checkpoint loads in transformers with
the same logits; ONNX Runtime runs the exported graph with PyTorch's outputs; safetensors headers read
by hand equal the safetensors library's view.

Tolerances: Hugging Face vs ours atol 1e-4 on logits of magnitude ~10 (float32, the same operations
in a different order: measured ~1e-5); ONNX Runtime vs PyTorch atol 1e-4 (measured ~2e-5).
"""
from __future__ import annotations

import json

import pytest
import torch

from labkit.export import export_onnx, gpt2_config, onnx_logits, onnx_session, read_safetensors_header, save_gpt2
from labkit.gpt import GPT, GPTConfig

transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

ATOL = 1e-4


def _tiny(bias: bool = True, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32, bias=bias)).eval()
    with torch.no_grad():  # biases and LayerNorm weights away from their 0 / 1 start, so the test sees them
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.slow  # importing transformers takes 5-15 s
@pytest.mark.parametrize("bias", [True, False])
def test_transformers_loads_our_gpt2_checkpoint_with_the_same_logits(tmp_path, bias):
    model = _tiny(bias)
    save_gpt2(model, tmp_path / "hf")
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    idx = torch.randint(0, 97, (3, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, hf = model(idx), theirs(idx).logits
    assert hf.shape == ours.shape == (3, 32, 97)
    torch.testing.assert_close(hf, ours, atol=ATOL, rtol=0)


@pytest.mark.slow
def test_a_wrong_mapping_would_be_caught(tmp_path):
    """Forget to transpose the square Conv1D weights (attn.c_proj, n_embd × n_embd: the shapes still fit)
    and transformers loads the file without a complaint, but the logits differ: the test above can fail."""
    from safetensors.torch import load_file, save_file

    model = _tiny()
    save_gpt2(model, tmp_path / "hf")
    weights = load_file(str(tmp_path / "hf" / "model.safetensors"))
    for name in weights:
        if name.endswith("attn.c_proj.weight"):
            weights[name] = weights[name].t().contiguous()  # back to nn.Linear's layout: the wrong one
    save_file(weights, str(tmp_path / "hf" / "model.safetensors"), metadata={"format": "pt"})
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    idx = torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        assert (theirs(idx).logits - model(idx)).abs().max() > 1e-3


def test_the_checkpoint_round_trips_through_from_gpt2(tmp_path):
    model = _tiny()
    save_gpt2(model, tmp_path / "hf")
    back = GPT.from_gpt2(tmp_path / "hf")
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config == gpt2_config(model) and config["model_type"] == "gpt2"


def test_the_safetensors_header_read_by_hand_matches_the_library(tmp_path):
    from safetensors import safe_open

    save_gpt2(_tiny(), tmp_path / "hf")
    path = tmp_path / "hf" / "model.safetensors"
    header = read_safetensors_header(path)
    assert header.pop("__metadata__") == {"format": "pt"}
    with safe_open(str(path), "pt") as f:
        assert sorted(header) == sorted(f.keys())
        for name, entry in header.items():
            tensor = f.get_tensor(name)
            assert entry["shape"] == list(tensor.shape) and entry["dtype"] == "F32"
            start, end = entry["data_offsets"]
            assert end - start == tensor.numel() * 4
    assert header["transformer.h.0.mlp.c_fc.weight"]["shape"] == [32, 128]  # Conv1D: (in, out)


@pytest.mark.slow
def test_onnx_runtime_gives_pytorchs_logits_for_other_shapes_than_the_example(tmp_path):
    model = _tiny()
    path = export_onnx(model, tmp_path / "gpt.onnx", torch.randint(0, 97, (1, 8)))
    session = onnx_session(path, threads=1)
    for shape in [(1, 8), (4, 32), (2, 5)]:
        idx = torch.randint(0, 97, shape, generator=torch.Generator().manual_seed(shape[1]))
        with torch.no_grad():
            torch.testing.assert_close(onnx_logits(session, idx), model(idx), atol=ATOL, rtol=0)


@pytest.mark.parametrize("call, words", [
    (lambda tmp: save_gpt2(torch.nn.Linear(2, 2), tmp / "x"), "takes a labkit GPT"),
    (lambda tmp: onnx_session(tmp / "missing.onnx"), "no ONNX file"),
    (lambda tmp: export_onnx(_tiny(), tmp / "g.onnx", [1, 2, 3]), "example must be"),
    (lambda tmp: read_safetensors_header(_write(tmp / "short.bin", b"abc")), "too short"),
    (lambda tmp: read_safetensors_header(_write(tmp / "big.bin", (10**9).to_bytes(8, "little"))), "longer than the file"),
])
def test_bad_input_gets_a_clear_error(tmp_path, call, words):
    with pytest.raises((TypeError, ValueError, FileNotFoundError), match=words):
        call(tmp_path)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path
