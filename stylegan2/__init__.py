"""StyleGAN2-ADA networks, ops and checkpoints, written from the papers.

Parameter names and tensor layouts follow the official implementation so that
official weights load by name; the code itself is our own (MIT).
"""
