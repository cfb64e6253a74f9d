"""Step prompts, left padding / EOS cutting, and the predict path with a scripted model."""

import torch
from helpers import ScriptedModel

from tl_lightning.data.steps import all_step_prompts, step_prompts
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.evaluation.predict import predict
from tl_lightning.format.call_format import join_rendered, render_calls
from tl_lightning.format.render import PaperFormat
from tl_lightning.models.generation import GenerationSettings, cut_at_eos, left_pad


def test_left_pad_and_cut():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, _ = left_pad([[1, 2, 3, 4]], pad_id=0, max_length=2)
    assert ids.tolist() == [[3, 4]]  # long prompts keep their tail
    assert cut_at_eos(torch.tensor([[4, 2, 9], [4, 5, 6]]), eos_id=2) == [[4, 2], [4, 5, 6]]


def test_step_prompts_skip_erroneous_calls_but_keep_them_in_history():
    conv = next(c for c in ToolWorld(seed=2).split("val", 100) if c.meta["errors"])
    bad = {e["message_index"] for e in conv.meta["errors"]}
    steps = list(step_prompts(conv))
    n_calls = sum(1 for m in conv.messages if m.role == "assistant")
    assert len(steps) == n_calls - len(bad)
    for s in steps:
        i = s.meta["step"]
        assert i not in bad and s.messages == conv.messages[:i] and s.gold == ((conv.messages[i].calls),)
    later = [s for s in steps if s.meta["step"] > min(bad)]
    assert later and all(any(m.calls == conv.messages[min(bad)].calls for m in s.messages) for s in later)
    assert len(list(step_prompts(conv, first_only=True))) == 1


def test_predict_with_scripted_gold_model(tokenizer):
    prompts = all_step_prompts(ToolWorld(seed=5).split("test", 12))
    gold_text = {PaperFormat(tokenizer.eos_token).render(p, add_generation_prompt=True).text.strip():
                 join_rendered(render_calls(p.gold[0])) for p in prompts}

    def answer(prompt):
        return gold_text[prompt.replace("<s>", "", 1).strip()]

    model = ScriptedModel(tokenizer, answer)
    preds = predict(model, tokenizer, PaperFormat(tokenizer.eos_token), prompts, GenerationSettings(max_new_tokens=200),
                    batch_size=5)
    assert [p.conversation.id for p in preds] == [p.id for p in prompts]  # input order kept despite length sorting
    assert all(p.classification.category == "correct" for p in preds), [(p.text, p.classification) for p in preds[:3]]
    assert model.calls == -(-len(prompts) // 5)
