"""Serve a trained tool caller with an OpenAI-compatible API (`POST /v1/chat/completions`, `GET /v1/models`).

    python -m tl_lightning.cli.serve MODEL_DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--name NAME]

MODEL_DIR is an adapter export (`<run>/hf/final`: the base, its quantization and the prompt format are read from
the run's `config.yaml` beside it) or a merged model (`python -m tl_lightning.cli.export`). Then, from any OpenAI
client: `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY or "none")`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from tl_lightning.core.errors import UserError


def training_config(model_dir: Path) -> dict:
    """The run's config saved beside the model (`config.yaml`), or {}."""
    path = model_dir / "config.yaml"
    if not path.is_file():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not YAML: {e}") from None


def model_settings(model_dir: Path, quantization: str | None):
    """What to load: an adapter on its base (as trained), or a merged model."""
    from tl_lightning.models.loading import ModelSettings

    if not model_dir.is_dir():
        raise UserError(f"model directory not found: {model_dir}")
    policy = ((training_config(model_dir).get("model") or {}).get("init_args") or {}).get("policy") or {}
    if (model_dir / "adapter_config.json").is_file():
        base = policy.get("checkpoint") or json.loads((model_dir / "adapter_config.json").read_text()).get(
            "base_model_name_or_path")
        return ModelSettings(checkpoint=base, quantization=quantization or policy.get("quantization", "nf4"),
                             compute_dtype=policy.get("compute_dtype", "float32"), lora=None, adapter=str(model_dir))
    if (model_dir / "config.json").is_file():
        return ModelSettings(checkpoint=str(model_dir), quantization=quantization, compute_dtype="float32", lora=None)
    raise UserError(f"{model_dir} is neither an adapter export (adapter_config.json) nor a model (config.json)")


def main(argv: list[str] | None = None) -> None:
    from tl_lightning.cli.runtime import quiet_third_party_logs, run_with_user_errors

    quiet_third_party_logs()
    ap = argparse.ArgumentParser(description="Serve a trained tool caller with an OpenAI-compatible API.")
    ap.add_argument("model_dir", help="an adapter export (<run>/hf/final) or a merged model directory")
    ap.add_argument("--host", default="127.0.0.1", help="interface to bind (default: this machine only)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    ap.add_argument("--name", default=None, help="the model id clients ask for (default: the directory's name)")
    ap.add_argument("--prompt-format", choices=["paper", "chat_template"], default=None,
                    help="default: the training run's data.init_args.prompt_format, else paper")
    ap.add_argument("--quantization", choices=["nf4", "int8"], default=None,
                    help="default: as trained for an adapter, none for a merged model")
    ap.add_argument("--max-tokens", type=int, default=256, help="new tokens when a request does not say")
    a = ap.parse_args(argv)

    def run() -> None:
        import torch

        from tl_lightning.core.checkpoints import load_tokenizer
        from tl_lightning.format.render import make_renderer
        from tl_lightning.models.loading import load_for_inference
        from tl_lightning.serving.server import ToolCaller, make_server

        model_dir = Path(a.model_dir)
        settings = model_settings(model_dir, a.quantization)
        data = (training_config(model_dir).get("data") or {}).get("init_args") or {}
        fmt = a.prompt_format or data.get("prompt_format", "paper")
        tok_dir = model_dir if (model_dir / "tokenizer_config.json").is_file() else settings.checkpoint
        tokenizer = load_tokenizer(str(tok_dir))
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        caller = ToolCaller(load_for_inference(settings, device), tokenizer, make_renderer(fmt, tokenizer),
                            a.name or model_dir.resolve().name, a.max_tokens)
        server = make_server(caller, a.host, a.port, a.api_key)
        host, port = server.server_address[:2]
        print(f"serving {caller.name!r} ({fmt} format) at http://{host}:{port}/v1 (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            server.shutdown()

    raise SystemExit(run_with_user_errors(run))


if __name__ == "__main__":
    main()
