"""A tiny random Llama with a locally trained tokenizer, for tests and demos without a download."""

from __future__ import annotations

import json
from pathlib import Path

from training.datasets import SAMPLE_CHAT, SAMPLE_PAIRS

SPECIAL_TOKENS = ["<unk>", "<pad>", "<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_EXTRA_SENTENCES = [
    "Hello! How can I help you today?",
    "Thanks for your patience, I am looking into it now.",
    "Please restart the device and try again.",
    "Is there anything else I can help you with?",
]


def _corpus() -> list[str]:
    # The shipped support conversations give the tokenizer the words this product talks in.
    texts = list(_EXTRA_SENTENCES)
    for line in SAMPLE_CHAT.read_text(encoding="utf-8").splitlines():
        if line.strip():
            texts.extend(m["content"] for m in json.loads(line)["messages"])
    texts.extend(SAMPLE_PAIRS.read_text(encoding="utf-8").splitlines())
    return texts


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer trained on the sample conversations, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="<|end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_tiny_model(directory: str | Path, hidden_size: int = 64, layers: int = 2, heads: int = 4,
                    vocab_size: int = 1024, seed: int = 0) -> Path:
    """Write a random LlamaForCausalLM and its tokenizer into `directory`; returns the path."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # With the default 0.02 init the output head can only produce near-uniform logits behind the final
        # norm, so no low-rank update could lower the loss much; a wider head makes the tiny model learnable.
        model.lm_head.weight.normal_(0.0, 0.25)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
