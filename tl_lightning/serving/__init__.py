"""Serving a trained tool caller: the OpenAI chat-completions schema (`openai_api.py`) and a local HTTP server
(`server.py`) that renders, generates and parses exactly as training does. Started by `python -m
tl_lightning.cli.serve`."""
