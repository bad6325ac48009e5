"""Seed -> W+ -> uint8 pixels for ganspace, re-exported from the shared stylegan2.render.

One implementation of the project's conventions (z = RandomState(seed).randn(1, z_dim),
pixels = (img * 127.5 + 128).clamp(0, 255)) keeps recipes reproducible in every tool.
"""
from stylegan2.render import class_labels, device_of, seed_to_w, synthesize_uint8

__all__ = ["class_labels", "device_of", "seed_to_w", "synthesize_uint8"]
