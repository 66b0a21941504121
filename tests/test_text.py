import warnings
from pathlib import Path

import pytest
import torch

from dsa_core.config import TINY
from dsa_core.text import TextEncoder, build_tokenizer, make_tiny_text_encoder

TEXT_LEN = 32
D_MODEL = TINY.text_encoder["d_model"]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    torch.manual_seed(0)
    return make_tiny_text_encoder(TINY.text_encoder, TEXT_LEN)


def _n_tokens(encoder: TextEncoder, prompt: str) -> int:
    return len(encoder.tokenizer(prompt, verbose=False).input_ids)


def test_tokenizer_ids_match_umt5_config(encoder: TextEncoder) -> None:
    tok = encoder.tokenizer
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.pad_token_id == encoder.model.config.pad_token_id
    assert tok.eos_token_id == encoder.model.config.eos_token_id
    assert tok("a red ball").input_ids[-1] == tok.eos_token_id
    assert len(tok) <= encoder.model.config.vocab_size
    assert tok.model_max_length == TEXT_LEN


@pytest.mark.parametrize("subfolders", [False, True])
def test_save_load_round_trip(encoder: TextEncoder, tmp_path: Path, subfolders: bool) -> None:
    if subfolders:
        # The Wan2.1 Diffusers layout.
        encoder.model.save_pretrained(tmp_path / "text_encoder")
        encoder.tokenizer.save_pretrained(tmp_path / "tokenizer")
    else:
        encoder.save_pretrained(tmp_path)
    loaded = TextEncoder.from_pretrained(tmp_path, TEXT_LEN, dtype=torch.float32, local_files_only=True)
    prompts = ["a red ball rolls across a green field", "a cat 🐈 jumps"]
    assert torch.equal(loaded.encode(prompts), encoder.encode(prompts))


def test_padding_is_zero_and_prompt_is_not(encoder: TextEncoder) -> None:
    prompts = ["a red ball", "a small blue cube spins on a white table"]
    out = encoder.encode(prompts)
    assert out.shape == (2, TEXT_LEN, D_MODEL)
    for row, prompt in zip(out, prompts):
        n = _n_tokens(encoder, prompt)
        assert n < TEXT_LEN
        assert (row[n:] == 0).all()
        assert (row[:n].abs().sum(-1) > 0).all()


def test_long_prompt_is_truncated_with_a_warning(encoder: TextEncoder) -> None:
    prompt = " ".join(["a red ball bounces"] * 20)
    dropped = _n_tokens(encoder, prompt) - TEXT_LEN
    with pytest.warns(UserWarning, match=f"{dropped} tokens dropped"):
        out = encoder.encode([prompt])
    assert out.shape == (1, TEXT_LEN, D_MODEL)
    assert (out.abs().sum(-1) > 0).all()


def test_short_prompt_does_not_warn(encoder: TextEncoder) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode(["a red ball"])


@pytest.mark.parametrize(
    "prompt",
    ["", "   ", "über café naïve", "🎈🚀 emoji", "tab\tnew\nline\x00\x07\x1b", "日本語のテキスト", "\u200b\ufeff"],
)
def test_any_string_tokenises(encoder: TextEncoder, prompt: str) -> None:
    ids = encoder.tokenizer(prompt).input_ids
    assert ids[-1] == encoder.tokenizer.eos_token_id
    assert max(ids) < encoder.model.config.vocab_size
    assert encoder.encode([prompt]).shape == (1, TEXT_LEN, D_MODEL)


def test_different_prompts_differ(encoder: TextEncoder) -> None:
    a, b = encoder.encode(["a red ball rolls", "a blue cube spins"])
    assert not torch.allclose(a, b)


def test_batching_does_not_change_an_embedding(encoder: TextEncoder) -> None:
    prompt = "a white bird flies over a calm lake"
    alone = encoder.encode([prompt])[0]
    batched = encoder.encode(["a brown dog runs along a sandy beach", prompt])[1]
    torch.testing.assert_close(batched, alone, atol=1e-6, rtol=1e-5)

    # Padding is masked out: the real positions equal an unpadded run of the encoder.
    ids = encoder.tokenizer([prompt], return_tensors="pt").input_ids
    with torch.no_grad():
        unpadded = encoder.model(input_ids=ids).last_hidden_state[0]
    torch.testing.assert_close(alone[: ids.shape[1]], unpadded, atol=1e-5, rtol=1e-5)


def test_build_tokenizer_on_a_custom_corpus() -> None:
    tok = build_tokenizer(["one two three", "four five six"], vocab_size=64, model_max_length=8)
    assert len(tok) <= 64
    assert tok.convert_ids_to_tokens(tok("ONE zebra").input_ids)[-1] == "</s>"
    assert tok.unk_token_id in tok("zebra").input_ids
