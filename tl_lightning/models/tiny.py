"""Build a tiny random Llama + a LLaMA-layout BPE tokenizer offline, saved with `save_pretrained`.

The quickstart and the tests load the result through the same `from_pretrained(..., quantization_config=...)` path
as a 7B run. The tokenizer is trained in-process with `tokenizers` on ToolWorld text (paper prompt format), so
tool names and call syntax get real merges: vocabulary layout 0 `<unk>`, 1 `<s>`, 2 `</s>`, 3..258 byte fallback
`<0xNN>`, then BPE pieces (Metaspace `▁`), like LLaMA-2 / CodeLLaMA.

    python -m tl_lightning.models.tiny OUT_DIR [--hidden 64 --layers 2 --vocab 1024 --seed 0]

or, in a config, `policy.build: {class_path: tl_lightning.models.tiny.TinyLlama}`: built on first use.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from tl_lightning.core.checkpoints import CheckpointBuilder

# LLaMA-2 / CodeLLaMA-Instruct style template; {% generation %} marks assistant tokens (env-notes §3).
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set sys = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}"
    "{% set messages = messages[1:] %}{% else %}{% set sys = '' %}{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + (sys if loop.first else '') + m['content'] + ' [/INST]' }}"
    "{% elif m['role'] == 'assistant' %}{% generation %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endgeneration %}"
    "{% elif m['role'] == 'tool' %}{{ '<tool_result>' + m['content'] + '</tool_result>' }}"
    "{% endif %}{% endfor %}")


def tokenizer_corpus(n_conversations: int = 400, seed: int = 0) -> list[str]:
    """Paper-format renderings of ToolWorld conversations plus a little plain prose."""
    from tl_lightning.data.toolworld import ToolWorld
    from tl_lightning.format.render import PaperFormat

    fmt = PaperFormat(eos_token="")
    texts = [fmt.render(c).text for c in ToolWorld(seed=seed).split("tokenizer", n_conversations)]
    texts += ["The quick brown fox jumps over the lazy dog. Tools return JSON; errors say what went wrong."] * 4
    return texts


def build_tokenizer(corpus: list[str], vocab_size: int = 1024):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    t = Tokenizer(models.BPE(unk_token="<unk>"))
    # split=True: merges never cross word boundaries, so a prompt ending in "Assistant:" tokenizes as a prefix
    # of the same prompt followed by " call(...)" (checked by tokenization.check_prefix).
    # Punctuation, newlines and digits isolated as in LLaMA's SentencePiece (digits split individually), so tool
    # names tokenize into word pieces rather than merging with "(" or the argument that follows.
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True),
        pre_tokenizers.Split("\n", behavior="isolated"),
        pre_tokenizers.Punctuation(behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=True)])
    t.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=max(vocab_size - 259, 64), show_progress=False))
    model = json.loads(t.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{i:02X}>": 3 + i for i in range(256)}}
    for piece in sorted(model["vocab"], key=model["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(x) if isinstance(x, list) else tuple(x.split(" ")) for x in model["merges"]]
    return LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False, pad_token="<unk>",
                          padding_side="left", chat_template=CHAT_TEMPLATE)


def build_tiny_checkpoint(out_dir: str | Path, hidden: int = 64, layers: int = 2, heads: int = 4,
                          vocab_size: int = 1024, seed: int = 0, max_positions: int = 2048) -> Path:
    """Write a random `LlamaForCausalLM` + tokenizer to `out_dir` (config.json, model.safetensors, tokenizer files)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(tokenizer_corpus(seed=seed), vocab_size)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    # transformers initialises weights from the global RNG. Seed it inside a fork that is restored after, so a run
    # that builds the checkpoint on first use (after seed_everything) then draws the same LoRA init and data order
    # as every later run that reuses it; the weights are those of `torch.manual_seed(seed)` either way.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@dataclass(frozen=True)
class TinyLlama(CheckpointBuilder):
    """A random Llama + ToolWorld-trained tokenizer, built where `policy.checkpoint` points if it is missing.

    Args:
        hidden: hidden size.
        layers: decoder layers.
        heads: attention heads.
        vocab: tokenizer vocabulary size.
        seed: seed of the weights and the tokenizer corpus.
    """

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    vocab: int = 1024
    seed: int = 0

    def build(self, path: Path) -> None:
        build_tiny_checkpoint(path, self.hidden, self.layers, self.heads, self.vocab, self.seed)

    def describe(self) -> str:
        return f"a new random TinyLlama (hidden {self.hidden}, {self.layers} layers, seed {self.seed})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    out = build_tiny_checkpoint(a.out_dir, a.hidden, a.layers, a.heads, a.vocab, a.seed)
    print(f"tiny checkpoint written to {out}")


if __name__ == "__main__":
    main()
