"""Residual MLPs over the shared latent, modulated by an embedding of the timestep and the condition.

Latents are short vectors (tens of dimensions), so an MLP with adaptive layer norm (the
embedding sets a scale and shift per block, as in DiT's adaLN) is enough and runs fast on
a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import ConditionEmbedding


class ModulatedBlock(nn.Module):
    """Residual block: layer norm, scale and shift from the embedding, then a two-layer MLP added to the input."""

    def __init__(self, hidden_dim: int, embedding_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim, elementwise_affine=False)
        self.modulation = nn.Linear(embedding_dim, 2 * hidden_dim)
        self.body = nn.Sequential(nn.Linear(hidden_dim, 2 * hidden_dim), nn.SiLU(), nn.Linear(2 * hidden_dim, hidden_dim))
        # Zero-initialising the last layer makes each block start as the identity, so the stack of
        # blocks starts as the identity between the input and output projections.
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, hidden: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(embedding).chunk(2, dim=-1)  # (B, 2H) -> 2 x (B, H)
        return hidden + self.body(self.norm(hidden) * (1 + scale) + shift)


class ModulatedMLP(nn.Module):
    """Residual MLP: an input projection, ``num_layers`` modulated blocks, then a projection to ``output_dim``."""

    def __init__(self, input_dim: int, output_dim: int, hidden_dim: int, num_layers: int, embedding_dim: int):
        super().__init__()
        self.input = nn.Linear(input_dim, hidden_dim)
        self.blocks = nn.ModuleList(ModulatedBlock(hidden_dim, embedding_dim) for _ in range(num_layers))
        self.output_norm = nn.LayerNorm(hidden_dim)
        self.output = nn.Linear(hidden_dim, output_dim)

    def forward(self, inputs: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        hidden = self.input(inputs)
        for block in self.blocks:
            hidden = block(hidden, embedding)
        return self.output(F.silu(self.output_norm(hidden)))


class Denoiser(nn.Module):
    """Diffusion network that predicts the noise, velocity or clean latent of a noisy latent at a timestep, given a condition.

    Which of the three it predicts is set by the generator's ``prediction_type``.
    """

    def __init__(self, latent_dim: int, hidden_dim: int, num_layers: int, embedding_dim: int):
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        self.time_projection = Timesteps(embedding_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(embedding_dim, embedding_dim)
        self.condition_embedding = ConditionEmbedding(latent_dim, embedding_dim)
        self.network = ModulatedMLP(latent_dim, latent_dim, hidden_dim, num_layers, embedding_dim)

    def forward(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        condition_mean: torch.Tensor,
        condition_logvar: torch.Tensor,
        unconditional: torch.Tensor,
    ) -> torch.Tensor:
        """Return the prediction (B, D) for noisy ``latents`` (B, D) at ``timesteps`` (B,)."""
        time = self.time_embedding(self.time_projection(timesteps).to(latents.dtype))  # (B,) -> (B, E)
        embedding = F.silu(time + self.condition_embedding(condition_mean, condition_logvar, unconditional))
        return self.network(latents, embedding)


class LatentGenerator(nn.Module):
    """GAN generator network that maps noise (B, noise_dim) and a condition to a latent (B, D)."""

    def __init__(self, noise_dim: int, latent_dim: int, hidden_dim: int, num_layers: int, embedding_dim: int):
        super().__init__()
        self.condition_embedding = ConditionEmbedding(latent_dim, embedding_dim)
        self.network = ModulatedMLP(noise_dim + embedding_dim, latent_dim, hidden_dim, num_layers, embedding_dim)

    def forward(self, noise: torch.Tensor, condition_mean: torch.Tensor, condition_logvar: torch.Tensor, unconditional: torch.Tensor) -> torch.Tensor:
        embedding = F.silu(self.condition_embedding(condition_mean, condition_logvar, unconditional))
        # The condition enters both the input and every block's modulation.
        return self.network(torch.cat([noise, embedding], dim=-1), embedding)


class LatentCritic(nn.Module):
    """GAN critic network that maps a latent (B, D) and its condition to one unbounded score per row (B,).

    It has no batch normalisation, because the gradient penalty needs each row's score to
    depend on that row alone.
    """

    def __init__(self, latent_dim: int, hidden_dim: int, num_layers: int, embedding_dim: int):
        super().__init__()
        self.condition_embedding = ConditionEmbedding(latent_dim, embedding_dim)
        self.network = ModulatedMLP(latent_dim + embedding_dim, 1, hidden_dim, num_layers, embedding_dim)

    def forward(self, latents: torch.Tensor, condition_mean: torch.Tensor, condition_logvar: torch.Tensor, unconditional: torch.Tensor) -> torch.Tensor:
        embedding = F.silu(self.condition_embedding(condition_mean, condition_logvar, unconditional))
        return self.network(torch.cat([latents, embedding], dim=-1), embedding).squeeze(-1)  # (B, 1) -> (B,)
