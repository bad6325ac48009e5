"""Turn piles of fashion photos into clean StyleGAN2-ADA training sets (see dataset_tool.py)."""
