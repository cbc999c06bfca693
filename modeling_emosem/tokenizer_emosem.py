"""A small byte-level BPE tokenizer trained locally, for the tiny preset (tests, demo, quickstart).

The paper preset uses distilgpt2's tokenizer from the Hub; the tiny preset must work offline, so it
trains GPT-2-style byte-level BPE on a built-in corpus in well under a second. Byte-level means any
text still encodes (unknown words just take more tokens).
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .configuration_emosem import EMOTIONS

EOS_TOKEN = "<|endoftext|>"

# Words of the emotional prompt and of first-person art explanations (ArtEmis style); the prompt
# words are repeated so each emotion's prompt encodes in at most `prompt_length` tokens.
_CORPUS_WORDS = """
i feel it makes me the this that a an of in on with and because looks like seems so very
painting picture artwork colors colours color dark bright light shadow sky sea water tree trees
flower flowers house building man woman people face figure child horse boat mountain clouds
sun moon star stars circle square triangle ring stripe stripes heart cross diamond shape shapes
red orange yellow green blue purple pink black white grey gray brown gold silver
happy sad angry scared calm peaceful funny beautiful ugly strange lonely warm cold soft sharp
smile laugh cry fear worry peace joy love hate death life storm fire night day
reminds me of there is are was were feels feeling makes looks looking see seeing
amusement awe contentment excitement anger disgust fear sadness something else
amused amazing content excited angry disgusted afraid sad
""".split()


def _corpus(emotions: tuple[str, ...] | list[str]) -> list[str]:
    prompts = [f"generate the mask for the emotion {e}" for e in emotions]
    lines = prompts * 50
    lines += [" ".join(_CORPUS_WORDS[i : i + 8]) for i in range(0, len(_CORPUS_WORDS), 3)] * 5
    return lines


def build_tiny_tokenizer(vocab_size: int = 512, emotions: tuple[str, ...] | list[str] = EMOTIONS) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (deterministic) and wrap it for transformers.

    The end-of-text token is id 0 and also serves as padding, as in GPT-2.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(emotions), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN, unk_token=EOS_TOKEN
    )
