"""Bring your own garment: find a photo in a generator's W / W+ space, optionally fine-tune G around it.

A package of its own rather than part of ``stylegan2/`` (networks, ops and their formats): projection is
a workflow that needs the dataset tool's framing (``fashion_data``) and perceptual feature networks, which
the network layer must not depend on.  ``project.py`` is its command line.
"""
