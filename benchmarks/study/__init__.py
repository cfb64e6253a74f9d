"""Does TL-Training work on a pretrained model? The ablation with error bars (#29): `python -m benchmarks.study`."""
