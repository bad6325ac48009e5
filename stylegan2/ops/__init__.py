"""Low-level ops: each has a readable PyTorch reference; fast kernels may sit behind the same function."""
