"""The StyleGAN2 objective: non-saturating logistic loss, lazy R1, path-length and style-mixing regularisation.

Each optimiser step is split into phases (`Gmain`, `Greg`, `Dmain`, `Dreg`: the regularisers are always
lazy); `accumulate_gradients` runs one phase on one micro-batch and calls backward.
Lazy phases run every `interval` steps, so their loss is multiplied by `gain = interval` to keep the
regulariser's average strength (Karras et al. 2020, StyleGAN2 Sec. 3.1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")


class StyleGAN2Loss:
    def __init__(self, G, D, augment_pipe=None, r1_gamma: float = 10.0, style_mixing_prob: float = 0.9,
                 pl_weight: float = 2.0, pl_batch_shrink: int = 2, pl_decay: float = 0.01):
        self.G, self.D, self.augment_pipe = G, D, augment_pipe
        self.r1_gamma = r1_gamma
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight = pl_weight
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = pl_decay
        # Running mean of path lengths: part of the training state (saved for exact resume).
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)

    def run_G(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate with style mixing: from a random layer on, the styles come from a second latent."""
        ws = self.G.mapping(z, c)
        if self.style_mixing_prob > 0:
            num_ws = ws.shape[1]
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
            mix = torch.rand([], device=ws.device) < self.style_mixing_prob
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, num_ws))
            mixed = self.G.mapping(torch.randn_like(z), c, update_w_avg=False)
            use_mixed = torch.arange(num_ws, device=ws.device)[None, :, None] >= cutoff
            ws = torch.where(use_mixed, mixed, ws)
        return self.G.synthesis(ws), ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    def accumulate_gradients(self, phase: str, real_img: torch.Tensor, real_c: torch.Tensor, gen_z: torch.Tensor,
                             gen_c: torch.Tensor, gain: float) -> dict[str, torch.Tensor]:
        """Backward one phase on one micro-batch; returns detached per-sample statistics for logging."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        do_Gmain = phase == "Gmain"
        do_Gpl = phase == "Greg" and self.pl_weight != 0
        do_Dmain = phase == "Dmain"
        do_Dr1 = phase == "Dreg" and self.r1_gamma != 0
        stats: dict[str, torch.Tensor] = {}

        if do_Gmain:  # G wants D to call its images real: softplus(-D(G(z)))
            gen_img, _ = self.run_G(gen_z, gen_c)
            gen_logits = self.run_D(gen_img, gen_c)
            loss_G = F.softplus(-gen_logits)
            loss_G.mean().mul(gain).backward()
            stats["Loss/G/loss"] = loss_G.detach()
            stats["Loss/scores/fake"] = gen_logits.detach()

        if do_Gpl:  # path length: |J_w^T y| should be constant, for random image-space directions y
            batch = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            gen_img, gen_ws = self.run_G(gen_z[:batch], gen_c[:batch])
            pl_noise = torch.randn_like(gen_img) / math.sqrt(gen_img.shape[2] * gen_img.shape[3])
            (pl_grads,) = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws],
                                              create_graph=True, only_inputs=True)
            pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
            # The freshly updated mean stays in this step's graph (as in the method); only the stored
            # running value is detached.
            pl_mean = self.pl_mean.lerp(pl_lengths.mean().to(self.pl_mean.dtype), self.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            pl_penalty = (pl_lengths - pl_mean).square()
            loss_Gpl = pl_penalty * self.pl_weight
            # gen_img[:, 0, 0, 0] * 0 keeps synthesis in the graph so every parameter gets a (zero) gradient.
            (gen_img[:, 0, 0, 0] * 0 + loss_Gpl).mean().mul(gain).backward()
            stats["Loss/pl_penalty"] = pl_penalty.detach()
            stats["Loss/G/reg"] = loss_Gpl.detach()

        if do_Dmain:  # D pushes fakes down: softplus(D(G(z)))
            with torch.no_grad():
                gen_img, _ = self.run_G(gen_z, gen_c)
            gen_logits = self.run_D(gen_img, gen_c)
            loss_Dgen = F.softplus(gen_logits)
            loss_Dgen.mean().mul(gain).backward()
            stats["Loss/D/fake"] = loss_Dgen.detach()

        if do_Dmain or do_Dr1:  # reals up, and R1: gamma/2 * |grad_x D(x)|^2 on reals
            real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
            real_logits = self.run_D(real_img_tmp, real_c)
            # ADA's r_t counts D's sign on every real it sees: in the main pass and in the R1 pass alike.
            stats["Loss/scores/real"] = real_logits.detach()
            stats["Loss/signs/real"] = real_logits.detach().sign()
            loss_Dreal = torch.zeros_like(real_logits)
            if do_Dmain:
                loss_Dreal = F.softplus(-real_logits)
                stats["Loss/D/real"] = loss_Dreal.detach()
            loss_Dr1 = torch.zeros_like(real_logits)
            if do_Dr1:
                (r1_grads,) = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img_tmp],
                                                  create_graph=True, only_inputs=True)
                r1_penalty = r1_grads.square().sum([1, 2, 3])
                loss_Dr1 = (r1_penalty * (self.r1_gamma / 2)).unsqueeze(1)
                stats["Loss/r1_penalty"] = r1_penalty.detach()
                stats["Loss/D/reg"] = loss_Dr1.detach()
            (real_logits * 0 + loss_Dreal + loss_Dr1).mean().mul(gain).backward()
        return stats
