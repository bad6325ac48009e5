"""Models: a generator's networks with the files that make it usable (sliders, components, card).

``load_model(spec, device)`` is the one loader every entry point uses; ``NAMED_NETWORKS`` the short
names it knows, ``default`` among them (the bundled model, shipped inside the installed package).
"""
from fashion_models.model import Model, ModelCard, companion_files, load_model, model_from_bundle, read_card
from fashion_models.registry import NAMED_NETWORKS, OFFICIAL_TRANSFER_NETWORKS, bundled_dir, resolve_model_file

__all__ = ["Model", "ModelCard", "companion_files", "load_model", "model_from_bundle", "read_card", "NAMED_NETWORKS",
           "OFFICIAL_TRANSFER_NETWORKS", "bundled_dir", "resolve_model_file"]
