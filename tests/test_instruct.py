"""Tests of `labkit.instruct`: the prompt, batches that grade only the response, the loss,
answering (cut at the end marker) and exact-match scores."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from labkit.gpt import GPT, GPTConfig
from labkit.instruct import (
    IGNORE_INDEX,
    InstructionCollator,
    collate_instructions,
    encode_example,
    end_of_text_id,
    exact_match,
    format_prompt,
    instruction_loss,
    length_grouped_batches,
    normalize_answer,
    normalized_exact_match,
    respond,
    response_loss,
    train_instructions,
)
from labkit.tokenizers import ENDOFTEXT, BPETokenizer, CharTokenizer
from labkit.training import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.py

EXAMPLES = [
    {"instruction": "Name the capital of France.", "input": "", "output": "Paris"},
    {"instruction": "Translate to French.", "input": "good morning", "output": "bonjour"},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "The sum is 5."},
]


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    text = "".join(format_prompt(e) + e["output"] + "\n" for e in EXAMPLES) * 30
    return BPETokenizer.train(text, vocab_size=300)  # "<|endoftext|>" is its last id


def tiny_gpt(vocab_size: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()


# ====================================================================== the prompt


def test_format_prompt_follows_alpaca_and_leaves_out_an_empty_input():
    assert format_prompt(EXAMPLES[0]) == "### Instruction:\nName the capital of France.\n\n### Response:\n"
    assert format_prompt(EXAMPLES[1]) == (
        "### Instruction:\nTranslate to French.\n\n### Input:\ngood morning\n\n### Response:\n")
    assert format_prompt({"instruction": "Say hi."}) == "### Instruction:\nSay hi.\n\n### Response:\n"
    with pytest.raises(ValueError, match="instruction"):
        format_prompt({"instruction": "  ", "output": "x"})
    with pytest.raises(TypeError, match="dict"):
        format_prompt("Say hi.")


def test_the_end_marker_is_the_tokenizers_endoftext(tokenizer):
    assert end_of_text_id(tokenizer) == tokenizer.special_tokens[ENDOFTEXT] == 299
    prompt, response = encode_example(EXAMPLES[0], tokenizer)
    assert tokenizer.decode(prompt) == format_prompt(EXAMPLES[0])
    assert tokenizer.decode(response) == "Paris" + ENDOFTEXT
    with pytest.raises(ValueError, match="no '<\\|endoftext\\|>' token"):
        end_of_text_id(CharTokenizer("abc"))


# ====================================================================== batches


def test_collate_grades_exactly_the_response_and_the_end_marker(tokenizer):
    x, y = collate_instructions(EXAMPLES, tokenizer, block_size=64)
    end = end_of_text_id(tokenizer)
    assert x.shape == y.shape and x.dtype == y.dtype == torch.long and x.shape[0] == 3
    for i, example in enumerate(EXAMPLES):
        prompt, response = encode_example(example, tokenizer)
        n = len(prompt) + len(response) - 1  # the row's length before padding
        graded = y[i] != IGNORE_INDEX
        assert tokenizer.decode(y[i][graded]) == example["output"] + ENDOFTEXT
        assert graded.nonzero()[0].item() == len(prompt) - 1  # the first graded target: the response's first token
        assert graded[: len(prompt) - 1].sum() == 0 and graded[n:].sum() == 0  # prompt and padding ungraded
        assert x[i, :n].tolist() == (prompt + response)[:-1]  # x is the text …
        assert (x[i, n:] == end).all()  # … padded with the end marker's id (the default pad_id)
        assert torch.equal(x[i, 1:n][graded[: n - 1]], y[i, : n - 1][graded[: n - 1]])  # y is x shifted left
    assert x.shape[1] == max(len(p) + len(r) - 1 for p, r in (encode_example(e, tokenizer) for e in EXAMPLES))


def test_a_long_row_keeps_the_prompt_and_cuts_the_response(tokenizer):
    example = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "The sum is 5. " * 10}
    prompt, _ = encode_example(example, tokenizer)
    block = len(prompt) + 3
    x, y = InstructionCollator(tokenizer, block, pad_id=0)([example])
    assert x.shape == (1, block)
    assert x[0, : len(prompt)].tolist() == prompt
    graded = y[0][y[0] != IGNORE_INDEX]
    assert len(graded) == 4  # the first 4 response tokens; the end marker was cut off
    assert example["output"].startswith(tokenizer.decode(graded))


def test_a_prompt_too_long_for_block_size_errors_or_is_skipped(tokenizer):
    long_prompt = {"instruction": "Translate to French. " * 10, "input": "", "output": "oui"}
    with pytest.raises(ValueError, match="example 1's prompt is .* tokens, more than block_size 40"):
        collate_instructions([EXAMPLES[0], long_prompt], tokenizer, block_size=40)
    with pytest.warns(UserWarning, match="left out 1 of 2"):
        x, y = collate_instructions([EXAMPLES[0], long_prompt], tokenizer, block_size=40, skip_too_long=True)
    assert x.shape[0] == 1 and tokenizer.decode(y[0][y[0] != IGNORE_INDEX]) == "Paris" + ENDOFTEXT
    with pytest.raises(ValueError, match="no example left"), pytest.warns(UserWarning):
        collate_instructions([long_prompt], tokenizer, block_size=40, skip_too_long=True)
    with pytest.raises(ValueError, match='example 0 needs an "output"'):
        collate_instructions([{"instruction": "Say hi."}], tokenizer, block_size=40)


def test_instruction_loss_ignores_prompt_and_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    y = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, IGNORE_INDEX], [IGNORE_INDEX, 1, 2, 6, 0]])
    graded = y != IGNORE_INDEX
    expected = F.cross_entropy(logits[graded], y[graded])
    torch.testing.assert_close(instruction_loss(logits, y), expected)
    changed = logits.clone()
    changed[~graded] = 100.0  # anything at ungraded positions
    torch.testing.assert_close(instruction_loss(changed, y), expected)


# ====================================================================== answering


class ScriptedModel(torch.nn.Module):
    """Stands in for a GPT: generate() appends a fixed list of tokens, whatever the prompt."""

    def __init__(self, continuation: list[int]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.continuation = continuation
        self.calls: list[dict] = []

    def generate(self, idx, max_new_tokens, **kwargs):
        self.calls.append(dict(kwargs, prompt=idx[0].tolist()))
        return torch.cat([idx, torch.tensor([self.continuation[:max_new_tokens]])], dim=1)


def test_respond_returns_only_the_answer_before_the_end_marker(tokenizer):
    end = end_of_text_id(tokenizer)
    answer, after = tokenizer.encode("bonjour"), tokenizer.encode("never shown")
    model = ScriptedModel(answer + [end] + after)
    assert respond(model, tokenizer, "Translate to French.", input="good morning") == "bonjour"
    assert model.calls[0]["stop_tokens"] == {end} and model.calls[0]["temperature"] == 0.0
    assert tokenizer.decode(model.calls[0]["prompt"]) == format_prompt(EXAMPLES[1])
    assert respond(model, tokenizer, EXAMPLES[1], max_new_tokens=2) == tokenizer.decode(answer[:2])  # no marker yet
    with pytest.raises(ValueError, match="input= only with an instruction string"):
        respond(model, tokenizer, EXAMPLES[1], input="hello")


def test_a_tuned_model_answers_and_stops_at_the_marker(tokenizer):
    """Train a tiny GPT on the three examples with fit; it answers each one exactly and stops."""
    x, y = collate_instructions(EXAMPLES, tokenizer, block_size=64)
    model = tiny_gpt(tokenizer.vocab_size)
    history = fit(model, TensorDataset(x, y), epochs=60, lr=1e-2, batch_size=3, loss_fn=instruction_loss,
                  optimizer="adamw", verbose=False, seed=0)
    assert history["train_loss"][-1] < 0.05 < history["train_loss"][0]
    answers = [respond(model, tokenizer, example, max_new_tokens=30) for example in EXAMPLES]
    assert answers == [example["output"] for example in EXAMPLES]
    prompt = torch.tensor([tokenizer.encode(format_prompt(EXAMPLES[0]))])
    out = model.generate(prompt, 30, temperature=0, stop_tokens={end_of_text_id(tokenizer)})
    assert out[0, -1].item() == end_of_text_id(tokenizer) and out.shape[1] < prompt.shape[1] + 30


# ====================================================================== scores


def test_exact_match_and_its_normalised_variant():
    predictions = ["Paris", " paris. ", "The sum is  5", "北京。", "Lyon"]
    references = ["Paris", "Paris", "the sum is 5.", "北京", "Paris"]
    assert exact_match(predictions, references) == pytest.approx(1 / 5)
    assert normalized_exact_match(predictions, references) == pytest.approx(4 / 5)
    assert normalize_answer("  Hello,   WORLD! ") == "hello world"
    assert normalize_answer("ＡＢＣ，１２３。") == "abc123"  # full-width letters, digits and punctuation
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        exact_match(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="lists"):
        exact_match("a", "a")


# ====================================================================== training (07c's loop, kept in labkit)


def test_length_grouped_batches_hold_every_index_once_and_need_less_padding():
    lengths = [int(n) for n in torch.randint(5, 200, (300,), generator=torch.Generator().manual_seed(3))]
    grouped = length_grouped_batches(lengths, 8, torch.Generator().manual_seed(0))
    assert sorted(i for batch in grouped for i in batch) == list(range(300))
    assert all(1 <= len(batch) <= 8 for batch in grouped)
    assert grouped == length_grouped_batches(lengths, 8, torch.Generator().manual_seed(0))  # seeded: the same
    order = torch.randperm(300, generator=torch.Generator().manual_seed(0)).tolist()
    shuffled = [order[k: k + 8] for k in range(0, 300, 8)]

    def padding(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches) - sum(lengths)

    assert padding(grouped) < 0.2 * padding(shuffled)
    with pytest.raises(ValueError, match="batch_size"):
        length_grouped_batches(lengths, 0, torch.Generator())


def test_train_instructions_is_chapter_07cs_loop(tokenizer):
    """train_instructions gives the weights of the loop 07c writes by hand, step for step."""
    records = EXAMPLES * 4
    model = tiny_gpt(tokenizer.vocab_size)
    by_hand = tiny_gpt(tokenizer.vocab_size)
    history = train_instructions(model, records, EXAMPLES, tokenizer, epochs=2, lr=3e-3, batch_size=4,
                                 warmup_steps=2, progress=False)

    collator = InstructionCollator(tokenizer, 64)
    lengths = [len(collator([r])[0][0]) for r in records]
    total = 2 * 3
    optimizer = torch.optim.AdamW(by_hand.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 2) * (1 - s / total))
    generator = torch.Generator().manual_seed(0)
    by_hand.train()
    for _ in range(2):
        for batch in length_grouped_batches(lengths, 4, generator):
            xb, yb = collator([records[i] for i in batch])
            loss = instruction_loss(by_hand(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(by_hand.parameters(), 1.0)
            optimizer.step()
            schedule.step()
    for (name, a), b in zip(model.state_dict().items(), by_hand.state_dict().values()):
        assert torch.equal(a, b), name
    assert history["step"] == [1, 2, 3, 4, 5, 6] and len(history["val_loss"]) == 6
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert history["val_loss"][-1] == pytest.approx(response_loss(model, EXAMPLES, collator), rel=1e-6)
    assert not model.training
