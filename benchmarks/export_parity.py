"""Does an exported tokenizer parse like training (issue #28)? Every call list of the real benchmark files (the
histories' assistant calls and the gold answers of RoTBench First_Turn/Third_Turn clean and heavy, ToolAlpaca
eval_real and eval_simulated) is rendered as the model writes it and read back twice: by our parser
(`parse_calls`) and by `tokenizer.parse_response` with the exported response template (SmolLM2's tokenizer, both
prompt formats). Prints how many are identical, and how many of the others contain backslash escapes.

    python -m benchmarks.export_parity   # builds runs/smollm2-135m first if it is missing
"""

from __future__ import annotations

from pathlib import Path

from tl_lightning.core.checkpoints import ensure_checkpoint, load_tokenizer
from tl_lightning.data.loaders import load_source
from tl_lightning.data.tokenization import exported_chat_template, exported_response_template
from tl_lightning.format.call_format import join_rendered, parse_calls, render_calls
from tl_lightning.models.pretrained import SmolLM2

CHECKPOINT = "runs/smollm2-135m"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = [("rotbench", f"rotbench/Data/{turn}/{noise}.json") for turn in ("First_Turn", "Third_Turn")
        for noise in ("clean", "heavy")] + [("toolalpaca", f"toolalpaca/data/{s}.json")
                                            for s in ("eval_real", "eval_simulated")]


def call_lists(conv):
    history = [m.calls for m in conv.messages if m.role == "assistant" and m.calls]
    return [calls for calls in history + list(conv.gold or []) if calls]


def parity(tok, prompt_format: str) -> dict:
    template = exported_response_template(tok, prompt_format)
    prefix = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False,
                                     chat_template=exported_chat_template(tok, prompt_format))
    end = tok.eos_token if prompt_format == "paper" else "<|im_end|>"
    n = same = escaped = differ_escaped = 0
    for fmt, rel in SETS:
        for conv in load_source(fmt, DATA / rel):
            tools = [{"type": "function", "function": t.to_openai()} for t in conv.tools]
            for calls in call_lists(conv):
                text = join_rendered(render_calls(calls))
                got = tok.parse_response(" " + text + end, template, prefix=prefix, tools=tools)
                got = [(c["function"]["name"], c["function"]["arguments"]) for c in got.get("tool_calls", [])]
                ok = got == [(c.name, c.arguments) for c in parse_calls(text).calls]
                n, same, escaped = n + 1, same + ok, escaped + ("\\" in text)
                differ_escaped += (not ok) and "\\" in text
    return {"call_lists": n, "identical": same, "with_escapes": escaped, "differ_with_escapes": differ_escaped}


def main() -> None:
    tok = load_tokenizer(ensure_checkpoint(CHECKPOINT, SmolLM2()))
    for prompt_format in ("paper", "chat_template"):
        r = parity(tok, prompt_format)
        print(f"{prompt_format}: {r['identical']} of {r['call_lists']} call lists identical; "
              f"{r['call_lists'] - r['identical']} differ, {r['differ_with_escapes']} of them with backslash escapes "
              f"({r['with_escapes']} call lists have escapes)")


if __name__ == "__main__":
    main()
