"""GANSpace for our generators: principal directions of W, labelled and exported.

components (fit/sefa -> .npz) -> sheets & hints (look and measure) -> directions YAML
(human labels) -> edits (layer-wise W+ moves) -> export (PNGs with recipes, manifest).
Run `python -m ganspace --help`.
"""
