"""The umT5 text encoder and its tokenizer, with Wan2.1's prompt conventions.

Wan2.1 encodes a prompt padded to `text_len` tokens, keeps the states of the real tokens
(`u[:seq_len]`) and pads them back to `text_len` with zeros; `TextEncoder.encode` returns
exactly that.  `make_tiny_text_encoder` builds a random small model with a tokenizer trained
on a few sentences, for tests and the tiny preset, where no checkpoint is at hand.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from diffusers.pipelines.wan.pipeline_wan import prompt_clean
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import nn
from transformers import (
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    UMT5Config,
    UMT5EncoderModel,
)

# Ids fixed by UMT5Config's defaults (pad_token_id=0, eos_token_id=1) and umT5's vocabulary.
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")

# Plain scenes of the kind the tiny model is trained on: colours, shapes, motions, backgrounds.
TINY_CORPUS: tuple[str, ...] = (
    "A red ball rolls slowly across a green field under a clear blue sky.",
    "A small blue cube spins on a white table in a bright room.",
    "A yellow triangle slides from left to right over a black background.",
    "Two orange circles bounce up and down on a grey floor.",
    "A purple square grows larger and then shrinks back to its original size.",
    "A white bird flies over a calm lake at sunset.",
    "A brown dog runs along a sandy beach while waves break behind it.",
    "A green star rotates clockwise in the centre of a dark blue screen.",
    "A pink balloon drifts upward past tall buildings in a busy city.",
    "A black cat walks across a wooden fence in the evening light.",
    "A silver car drives down an empty road between snowy mountains.",
    "Three small red dots move in a circle around a large white dot.",
    "A gold coin falls and spins on a marble floor before it stops.",
    "A striped fish swims through green seaweed near the bottom of the sea.",
    "Rain falls on a quiet street lit by orange lamps at night.",
    "A paper boat floats down a narrow stream in a dense forest.",
    "A cyan rectangle moves diagonally across a checkered background.",
    "A tall tree sways gently in the wind on a grassy hill.",
    "A brown horse gallops across an open field of yellow flowers.",
    "A glass of water sits on a table as sunlight moves across the wall.",
    "A violet sphere rolls down a ramp and bounces off a red wall.",
    "Clouds drift slowly over a wide desert with orange sand dunes.",
    "A child throws a green frisbee in a sunny park.",
    "A white rabbit hops across a snowy meadow toward the trees.",
    "A dark grey train crosses a long bridge above a river.",
    "Several colourful leaves fall from an old tree in autumn.",
    "A blue kite flies high above a windy beach with soft white clouds.",
    "A candle flame flickers in a dark room with stone walls.",
    "A red square and a blue circle swap places on a plain white background.",
    "A small yellow duck paddles around a round pond.",
    "Smoke rises from a chimney of a little house in a snowy valley.",
    "A spinning top wobbles and slowly falls over on a wooden floor.",
    "Waves roll onto a rocky shore under a cloudy grey sky.",
    "A green frog jumps from one lily pad to another.",
    "A hot air balloon rises above hills covered with morning fog.",
    "A black and white ball is kicked across a muddy football pitch.",
    "Fireworks burst in bright colours over a dark harbour.",
    "A butterfly with blue wings lands on a bright red flower.",
    "A camera slowly zooms in on a mountain lake surrounded by pine trees.",
    "The camera pans from left to right along a crowded market street.",
    "An orange fox trots through tall grass at dawn.",
    "A bicycle rider turns a corner on a narrow cobbled street.",
    "Snow falls softly on a parked red car near a lamp post.",
    "A wooden windmill turns its blades slowly in a flat green landscape.",
    "A white cloud changes shape as it moves across a pale sky.",
    "A triangle, a square and a circle line up in a row and then scatter.",
    "Light reflects off the surface of a shiny metal sphere as it turns.",
    "A sailboat glides across calm turquoise water near a sandy island.",
    "A squirrel climbs quickly up the trunk of an oak tree.",
    "Bubbles float upward and pop in front of a bright pink wall.",
    "A green leaf spirals down and lands on the surface of a still pond.",
    "A robot arm picks up a blue block and places it on a red one.",
    "A lighthouse beam sweeps across a stormy sea at midnight.",
    "A woman in a yellow coat opens an umbrella as it starts to rain.",
    "A row of dominoes topples one after another on a long table.",
    "A jellyfish glows softly as it pulses through deep black water.",
    "A pendulum swings back and forth in front of a brick wall.",
    "An eagle circles high above a canyon of red rocks.",
    "A steaming cup of coffee rests on a windowsill beside a plant.",
    "A toy train runs around a circular track on a carpet.",
    "A drop of ink spreads slowly through a clear glass of water.",
    "A skateboarder rolls down a ramp in an empty concrete park.",
    "Grass ripples in waves as the wind blows across a wide prairie.",
    "A small white boat rocks gently in a quiet harbour at dawn.",
    "A bright yellow sun rises behind a line of distant purple hills.",
    "A heart shape pulses and changes colour from red to pink.",
    "A hexagon flips over and reveals a different colour on its back side.",
    "Marbles of many colours roll down a spiral slide.",
    "A penguin waddles across the ice and dives into cold water.",
    "A dancer twirls on a stage lit by a single spotlight.",
    "Traffic lights change from green to yellow to red at a quiet crossing.",
    "A spider spins a web between two branches covered in dew.",
    "A dragon kite with a long tail twists in the strong breeze.",
    "A chef flips a pancake in a hot pan in a busy kitchen.",
    "A hamster runs inside a wheel in a cage with soft bedding.",
    "Sand pours through an hourglass standing on an old desk.",
    "A snowman with a carrot nose stands in a garden as snow falls.",
    "A zebra and a giraffe walk past an acacia tree on the savanna.",
    "A flag waves on a pole at the top of a castle tower.",
    "A motorboat speeds across a lake and leaves a white wake behind.",
    "An astronaut floats slowly inside a space station near a window.",
    "A plane flies through thick clouds and comes out into sunshine.",
    "A neon sign flickers above the door of a small diner at night.",
    "A cat chases a red laser dot across a polished floor.",
    "Ocean water shimmers as a school of silver fish turns together.",
    "A volcano puffs grey ash into a hazy evening sky.",
    "A basketball bounces twice and then goes through the hoop.",
    "Autumn leaves swirl around a bench in an empty park.",
    "A colourful parrot spreads its wings on a tropical branch.",
    "A gentle stream flows over smooth pebbles in a shady glade.",
)


def build_tokenizer(
    corpus: Iterable[str], vocab_size: int, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """Train a small T5-like tokenizer (`<pad>`=0, `</s>`=1, `<unk>`=2, `</s>` appended).

    BPE rather than T5's Unigram: on a small caption corpus the Unigram trainer stops far
    below `vocab_size` and splits even frequent words ("▁", "and"), doubling prompt length;
    BPE keeps every common word whole.  Characters never seen in training become `<unk>`,
    so any string tokenises.
    """
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tokenizer.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def _subfolder(path: Path, name: str) -> Path:
    """`path/name` in the Wan2.1 Diffusers layout (`tokenizer/`, `text_encoder/`), else `path`."""
    return path / name if (path / name).is_dir() else path


class TextEncoder(nn.Module):
    """umT5 encoder + tokenizer: prompts → [B, text_len, d_model] states, zero past each prompt."""

    def __init__(self, model: UMT5EncoderModel, tokenizer: PreTrainedTokenizerBase, text_len: int) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.text_len = text_len

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        text_len: int,
        dtype: torch.dtype = torch.bfloat16,
        local_files_only: bool = False,
    ) -> TextEncoder:
        """Load from a folder holding both, or from a local Wan2.1 Diffusers checkpoint with
        `tokenizer/` and `text_encoder/` subfolders.  The default dtype is Wan2.1's `t5_dtype`."""
        path = Path(path)
        model = UMT5EncoderModel.from_pretrained(
            _subfolder(path, "text_encoder"), dtype=dtype, local_files_only=local_files_only
        )
        tokenizer = AutoTokenizer.from_pretrained(_subfolder(path, "tokenizer"), local_files_only=local_files_only)
        return cls(model.eval(), tokenizer, text_len)

    def save_pretrained(self, path: str | Path) -> None:
        """Write the model and the tokenizer into one folder."""
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Prompts → [B, text_len, d_model]; prompts longer than `text_len` tokens are truncated
        with a warning."""
        # The cleaning diffusers' WanPipeline applies (HTML entities, runs of whitespace).
        prompts = [prompt_clean(p) for p in prompts]
        # A first untruncated pass, only to count what truncation will drop.
        lengths = [len(ids) for ids in self.tokenizer(prompts, verbose=False)["input_ids"]]
        for prompt, n in zip(prompts, lengths):
            if n > self.text_len:
                warnings.warn(
                    f"prompt has {n} tokens, more than text_len={self.text_len}: "
                    f"{n - self.text_len} tokens dropped from its end, truncated ({prompt[:40]!r}...)",
                    stacklevel=2,
                )
        batch = self.tokenizer(
            prompts, padding="max_length", max_length=self.text_len, truncation=True, return_tensors="pt"
        ).to(self.model.device)
        # Gradients flow when the caller enables them: the tiny encoder trains with its teacher.
        states = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        return states.masked_fill(~batch.attention_mask.bool().unsqueeze(-1), 0.0)


def make_tiny_text_encoder(
    config: dict[str, Any], text_len: int, corpus: Iterable[str] | None = None
) -> TextEncoder:
    """A randomly initialised umT5 encoder from `UMT5Config` kwargs, with a tokenizer trained on
    `corpus` (default: `TINY_CORPUS`)."""
    tokenizer = build_tokenizer(TINY_CORPUS if corpus is None else corpus, config["vocab_size"], text_len)
    # The tokenizer may hold a few more entries than asked for; every id must have an embedding.
    vocab_size = max(config["vocab_size"], len(tokenizer))
    model = UMT5EncoderModel(UMT5Config(**{**config, "vocab_size": vocab_size}))
    return TextEncoder(model.eval(), tokenizer, text_len)
