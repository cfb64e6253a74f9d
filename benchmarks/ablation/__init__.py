"""Small-scale reproduction of the TL-Training ablation (MAE / PKT / IRM) on ToolWorld; see run.py."""
