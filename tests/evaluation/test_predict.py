"""The predict path (render, tokenize, length-sorted batched generation, parse, classify) with a scripted model."""

from helpers import ScriptedModel

from tl_lightning.data.steps import all_step_prompts
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.evaluation.predict import predict
from tl_lightning.format.call_format import join_rendered, render_calls
from tl_lightning.format.render import PaperFormat
from tl_lightning.models.engine import HFGenerate
from tl_lightning.models.generation import GenerationSettings


def test_predict_with_scripted_gold_model(tokenizer):
    prompts = all_step_prompts(ToolWorld(seed=5).split("test", 12))
    gold_text = {PaperFormat(tokenizer.eos_token).render(p, add_generation_prompt=True).text.strip():
                 join_rendered(render_calls(p.gold[0])) for p in prompts}

    def answer(prompt):
        return gold_text[prompt.replace("<s>", "", 1).strip()]

    model = ScriptedModel(tokenizer, answer)
    preds = predict(model, tokenizer, PaperFormat(tokenizer.eos_token), prompts, GenerationSettings(max_new_tokens=200),
                    batch_size=5, engine=HFGenerate())  # a scripted model answers through `generate`
    assert [p.conversation.id for p in preds] == [p.id for p in prompts]  # input order kept despite length sorting
    assert all(p.classification.category == "correct" for p in preds), [(p.text, p.classification) for p in preds[:3]]
    assert model.calls == -(-len(prompts) // 5)
