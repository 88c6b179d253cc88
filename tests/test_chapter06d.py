"""Chapter 06d (a real LLM: from GPT-2 to Llama): its notebooks are wired to its checks, every
by-hand piece is compared with labkit's, the committed outputs say what the prose says of them,
and the checks accept other correct styles of answer while rejecting the classic mistakes.

The notebooks themselves are executed by nbval (`make nbval`); these tests only read them,
except the last one, which measures 06.11's texts with SmolLM2 once.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from labkit.course.checks import ch06d
from labkit.course.exercises import chapter_exercises, check
from labkit.llama import Llama, LlamaConfig, Rotary, apply_rotary
from notebook_cells import cells as _cells, code_cells as _code_cells

REPO = Path(__file__).resolve().parent.parent
CHAPTER = REPO / "chapters" / "06d_real_llm.ipynb"
SOLUTIONS = REPO / "solutions" / "06d_real_llm_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("06d")]


def _outputs(path: Path, marker: str) -> str:
    """The text the committed notebook printed in the code cell that contains `marker`."""
    cell = next(c for c in _cells(path) if c["cell_type"] == "code" and marker in "".join(c["source"]))
    texts = []
    for output in cell.get("outputs", []):
        texts.append("".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", "")))
    return "".join(texts)


def test_chapter_has_exercises_06_9_to_06_11_and_chapter_06_has_them_too():
    assert IDS == ["06.9", "06.10", "06.11"]
    assert {"06.9", "06.10", "06.11"} <= {ex.id for ex in chapter_exercises("06")}


def test_each_change_from_gpt2_to_llama_is_built_by_hand_and_compared():
    source = "\n".join(_code_cells(CHAPTER))
    for name in ("RMSNorm by hand vs labkit.llama.RMSNorm", "RoPE by hand vs labkit.llama.apply_rotary",
                 "SwiGLU by hand vs labkit.llama.SwiGLU", "GQA attention by hand vs labkit.llama.Attention",
                 "one block by hand vs labkit's dequantize_q4_1_block", "the same 32 weights in the loaded model"):
        assert f'labkit.compare("{name}"' in source, name


def test_the_committed_run_shows_every_comparison_passed():
    text = "\n".join(_outputs(CHAPTER, marker) for marker in
                     ("def rms_norm", "def rotate", "mlp = SwiGLU", "attn, (B, T)", "block = bytes("))
    assert text.count("✓") >= 6 and "✗" not in text


def test_rope_scores_depend_on_the_distance_only_in_the_committed_run():
    scores = re.findall(r"distance\s+(\d+)\): q·k = ([+-][\d.]+)", _outputs(CHAPTER, "def rotate"))
    by_distance: dict[str, list[float]] = {}
    for distance, score in scores:
        by_distance.setdefault(distance, []).append(float(score))
    three, ten = by_distance["3"], by_distance["10"]
    assert len(three) == 3 and max(three) - min(three) < 1e-3, three  # 5-2, 50-47, 1000-997 agree
    assert abs(ten[0] - three[0]) > 1e-2


def test_perplexity_is_compared_per_character_and_the_table_is_printed():
    source = "\n".join(_code_cells(CHAPTER))
    assert "def bits_per_char(" in source and "math.log(2)" in source
    table = _outputs(CHAPTER, "bits/char")
    for name in ("shakespeare_char", "tang_char", "SmolLM2-135M"):
        assert name in table


def test_the_prose_about_the_perplexity_table_matches_the_committed_numbers():
    """The markdown says SmolLM2 wins on English and tang_char wins on Tang poems: the run must agree."""
    rows = re.findall(r"^(English|Chinese).*?(shakespeare_char|tang_char|SmolLM2-135M)\s+[\d,]+\s+[\d.]+\s+([\d.]+)",
                      _outputs(CHAPTER, "bits/char"), flags=re.M)
    bpc = {(lang, model): float(value) for lang, model, value in rows}
    assert bpc[("English", "SmolLM2-135M")] < bpc[("English", "shakespeare_char")]
    assert bpc[("Chinese", "tang_char")] < bpc[("Chinese", "SmolLM2-135M")]


def test_the_factual_question_is_answered_wrongly_as_the_prose_says():
    text = _outputs(CHAPTER, "In which year did the Titanic sink?")
    answer = re.search(r"A: (.*)", text).group(1)
    assert "1912" not in answer and re.search(r"\d{4}", answer), answer


def test_chat_widget_streams_with_sliders_and_a_button_and_is_marked_for_nbval():
    source = next(c for c in _code_cells(CHAPTER) if "def chat_widget(" in c)
    for part in ("widgets.Textarea(", "widgets.FloatSlider(", "widgets.IntSlider(", "widgets.Button(",
                 "widgets.Output(", "on_text=", "on_click("):
        assert part in source, part
    shown = [c for c in _code_cells(CHAPTER) if "display(chat_widget(" in c]
    assert len(shown) == 1 and shown[0].splitlines()[0] == "# NBVAL_IGNORE_OUTPUT"


def test_a_seeded_answer_is_committed():
    text = _outputs(CHAPTER, "answer = chat(")
    assert "tokens/s" in text and len(text.split()) >= 20


def test_chapter_reads_nothing_from_the_network():
    source = "\n".join(_code_cells(CHAPTER) + _code_cells(SOLUTIONS))
    assert "from_pretrained(" not in source and "hf_hub" not in source and "requests" not in source


# --------------------------------------------------------------------------- the checks


def test_rope_check_accepts_labkits_rotation():
    def rope_at(x, pos, base):
        D = x.shape[-1]
        cos, sin = Rotary(D, base)(pos, 1, x.dtype)
        return apply_rotary(x, cos[0], sin[0])

    assert check("06.9", rope_at, show=False).passed


def test_rope_check_names_llama_cpps_pair_layout():
    message = check("06.9", ch06d._rope_adjacent_pairs, show=False).message
    assert "llama.cpp" in message


def test_kv_cache_reference_matches_a_real_llama_cache():
    """The formula the check teaches counts exactly the bytes labkit's KVCache holds under GQA."""
    from labkit.gpt import KVCache

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=11, n_layer=2, n_embd=48, n_head=6, n_kv_head=2, n_hidden=64)
    model = Llama(config).eval()
    cache = KVCache(config.n_layer)
    with torch.no_grad():
        model(torch.zeros(3, 20, dtype=torch.long), cache)
    held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert held == ch06d._reference_llama_kv_cache_bytes(config, 20, 3, 4)


def test_kv_cache_check_names_the_query_heads_mistake():
    message = check("06.10", lambda c, T, B, b: 2 * c.n_layer * c.n_embd * T * B * b, show=False).message
    assert "n_kv_head" in message


def test_predict_measure_explain_accepts_a_wrong_prediction_with_the_right_measurement():
    answer = dict(prediction="shuffled", explanation="b", **ch06d.MEASURED)
    result = check("06.11", answer, show=False)
    assert result.passed and "you predicted 'shuffled'" in result.message


def test_predict_measure_explain_stub_is_not_done():
    stub = dict(prediction="ordered", ppl_ordered=..., ppl_shuffled=..., explanation="b")
    assert "not done yet" in check("06.11", stub, show=False).message


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    from labkit.smollm2 import load_smollm2

    return load_smollm2()


def test_the_measurement_06_11_checks_against_is_smollm2s(smollm2):
    model, tokenizer = smollm2
    for key, text in (("ppl_ordered", ch06d.ORDERED), ("ppl_shuffled", ch06d.SHUFFLED)):
        ids = torch.tensor([tokenizer.encode(text)])
        with torch.no_grad():
            loss = torch.nn.functional.cross_entropy(model(ids)[0, :-1], ids[0, 1:]).item()
        assert math.isclose(math.exp(loss), ch06d.MEASURED[key], rel_tol=0.01), key
