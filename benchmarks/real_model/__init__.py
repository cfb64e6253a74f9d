"""A real pretrained model end to end on CPU (SmolLM2-135M-Instruct): see run.py."""
