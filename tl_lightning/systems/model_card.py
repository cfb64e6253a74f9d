"""The model card (`README.md`) written beside every export: what the model is, how it was trained, on what, how it
scored, and how to load, serve and prompt it, with metadata the Hugging Face Hub reads (`base_model`,
`library_name`, tags). Everything comes from the export folder itself: the run's `config.yaml`, its
`data_stats.json` and the metrics given."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

STAGES = {"SFTSystem": ("SFT (TL-Training: MAE + PKT)", "sft"), "PPOSystem": ("RL (TL-Training IRM: PPO / GRPO / RLOO)",
                                                                            "rl"),
          "OnlineRLSystem": ("online multi-turn RL", "online-rl")}


def _load(path: Path, reader) -> dict:
    try:
        return reader(path.read_text()) or {} if path.is_file() else {}
    except (ValueError, yaml.YAMLError):
        return {}


def _init_args(node) -> dict:
    return (node or {}).get("init_args") or {} if isinstance(node, dict) else {}


def _component(node) -> str:
    return node.get("class_path", "").rsplit(".", 1)[-1] if isinstance(node, dict) else str(node)


def prompt_format_of(out: Path) -> str:
    """The prompt format of the run exported to `out` (its `config.yaml`; "paper" when it does not say)."""
    data = _init_args(_load(out / "config.yaml", yaml.safe_load).get("data"))
    return data.get("prompt_format", "paper")


def method_lines(config: dict) -> list[str]:
    """The training method and its settings, read from the run's config."""
    model, data = config.get("model") or {}, _init_args(config.get("data"))
    system = _component(model)
    args = _init_args(model)
    stage = STAGES.get(system, (system or "unknown", ""))[0]
    lines = [f"- **Stage:** {stage} (`{system}`)"]
    policy = args.get("policy") or {}
    lora = policy.get("lora") or {}
    lines.append(f"- **Base quantization:** {policy.get('quantization', 'nf4')}, compute {policy.get('compute_dtype')}"
                 + (f"; LoRA r={lora.get('r')}, alpha={lora.get('alpha')}" if lora else "")
                 + (f"; from adapter `{policy['adapter']}`" if policy.get("adapter") else ""))
    mae = (data.get("mae") or {})
    if mae:
        lines.append(f"- **MAE:** {mae.get('mode', 'mask')} erroneous calls (detector "
                     f"`{_component(mae.get('detector'))}`)")
    if data.get("weighting"):
        lines.append(f"- **Token weighting:** `{_component(data['weighting'])}` "
                     f"{json.dumps(_init_args(data['weighting']))}")
    if args.get("advantage"):
        lines.append(f"- **Advantages:** `{_component(args['advantage'])}` {json.dumps(_init_args(args['advantage']))}"
                     f"; critic: `{_component(args.get('critic')) or 'none'}`")
    if args.get("episode_reward"):
        lines.append(f"- **Episode reward:** {json.dumps(args['episode_reward'])}")
    opt = args.get("optimizer")
    if isinstance(opt, dict):
        lines.append(f"- **Optimizer:** `{_component(opt)}` {json.dumps(_init_args(opt))}")
    trainer = config.get("trainer") or {}
    budget = {k: trainer[k] for k in ("max_steps", "max_epochs", "limit_train_batches") if trainer.get(k) not in
              (None, -1)}
    if budget:
        lines.append(f"- **Budget:** {json.dumps(budget)}")
    return lines


def data_lines(config: dict, stats: dict) -> list[str]:
    data = config.get("data") or {}
    args = _init_args(data)
    lines = [f"- **Data module:** `{_component(data)}`, prompt format `{args.get('prompt_format', 'paper')}`"]
    for key in ("train", "val", "source"):
        if isinstance(args.get(key), dict):
            lines.append(f"- **{key}:** {json.dumps(args[key])}")
    if args.get("environment"):
        lines.append(f"- **Environment:** `{_component(args['environment'])}` "
                     f"{json.dumps(_init_args(args['environment']))}")
    if stats:
        lines.append("- **Counts (`data_stats.json`):** " + ", ".join(
            f"{k} {v}" for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)))
    return lines


def model_card(out: Path, library: str, metrics: dict[str, float] | None = None) -> str:
    """The card's text for the export folder `out` (`library`: "peft" for an adapter, "transformers" merged)."""
    config = _load(out / "config.yaml", yaml.safe_load)
    stats = _load(out / "data_stats.json", json.loads)
    adapter = _load(out / "adapter_config.json", json.loads)
    policy = _init_args(config.get("model")).get("policy") or {}
    base = adapter.get("base_model_name_or_path") or policy.get("checkpoint") or "unknown"
    fmt = prompt_format_of(out)
    system = _component(config.get("model") or {})
    tags = ["tl-lightning", "tool-calling", "function-calling"] + (["lora"] if library == "peft" else [])
    tags += [STAGES[system][1]] if system in STAGES else []
    head = yaml.safe_dump({"base_model": base, "library_name": library, "pipeline_tag": "text-generation",
                           "tags": tags}, sort_keys=False)
    auto = ("peft", "AutoPeftModelForCausalLM") if library == "peft" else ("transformers", "AutoModelForCausalLM")
    load = f'from {auto[0]} import {auto[1]}\nmodel = {auto[1]}.from_pretrained("{out.name}")'
    scored = [f"| {k} | {v:.4g} |" for k, v in sorted((metrics or {}).items())]
    parts = [f"---\n{head}---", f"# {out.name}: a tool caller trained with tl-lightning",
             f"A {'LoRA adapter for' if library == 'peft' else 'merged model from'} `{base}` that calls tools with "
             "the TL-Training method (arXiv 2412.15495).", "## Training", *method_lines(config), "",
             "## Data", *data_lines(config, stats), "", "## Evaluation",
             *(["| metric | value |", "|---|---|", *scored] if scored else
               ["No evaluation was logged with this export. Run `python main.py test --config configs/eval/all.yaml "
                "--model.init_args.policy.adapter <this folder>`."]), "",
             "## Use", f"Prompt format: `{fmt}` (tl-lightning's `format/render.py`)"
             + ". The tokenizer's chat template renders it, so `tokenizer.apply_chat_template(messages, tools=tools, "
             "add_generation_prompt=True)` gives the prompt the model was trained on (tool calls with `arguments` "
             "as objects). Replies are Python-style calls such as `name(argument='value')`, one per line; "
             "`tokenizer.parse_response(reply, prefix=prompt, tools=tools)` returns them as OpenAI-style "
             "`tool_calls` (strings with backslash escapes keep the backslash there; tl-lightning's own parser, "
             "used by its server, reads them exactly, with `ast`, never executed).",
             f"```python\n{load}\n```",
             "Serve it with an OpenAI-compatible API and call it from any OpenAI client:",
             f"```bash\npython -m tl_lightning.cli.serve {out.name} --port 8000\n```",
             "```python\nfrom openai import OpenAI\nclient = OpenAI(base_url=\"http://127.0.0.1:8000/v1\", "
             "api_key=\"none\")\nclient.chat.completions.create(model=" + f'"{out.name}"' + ", messages=[...], "
             "tools=[...])\n```"]
    return "\n".join(parts) + "\n"


def write_model_card(out: Path, library: str = "peft", metrics: dict[str, float] | None = None) -> Path:
    path = out / "README.md"
    path.write_text(model_card(out, library, metrics), encoding="utf-8")
    return path
