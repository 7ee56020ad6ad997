"""Gaussian posteriors over the shared latent: one diagonal Gaussian, and mixtures of them."""

from __future__ import annotations

import math

import torch

# Bounds on the log-variance keep exp() finite in float32 and the KL well defined; the same
# range is common in latent-diffusion autoencoders.
LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0


class DiagonalGaussian:
    """A batch of Gaussians with diagonal covariance, ``mean`` and ``logvar`` of shape (B, D)."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        if mean.shape != logvar.shape:
            raise ValueError(f"mean and logvar shapes differ: {tuple(mean.shape)} and {tuple(logvar.shape)}")
        self.mean = mean
        self.logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw one reparameterised sample per row, so gradients flow to ``mean`` and ``logvar``."""
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL divergence to the standard normal prior, summed over latent dimensions: shape (B,)."""
        return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=-1)

    def log_prob(self, latents: torch.Tensor) -> torch.Tensor:
        """Log density of ``latents`` (B, D) under each row's Gaussian: shape (B,)."""
        squared = (latents - self.mean).pow(2) / self.var
        return -0.5 * torch.sum(squared + self.logvar + math.log(2 * math.pi), dim=-1)

    def __getitem__(self, index) -> DiagonalGaussian:
        return DiagonalGaussian(self.mean[index], self.logvar[index])

    def detach(self) -> DiagonalGaussian:
        return DiagonalGaussian(self.mean.detach(), self.logvar.detach())

    @classmethod
    def standard(cls, batch_size: int, latent_dim: int, device=None, dtype=torch.float32) -> DiagonalGaussian:
        """Return the prior N(0, I) repeated ``batch_size`` times."""
        zeros = torch.zeros(batch_size, latent_dim, device=device, dtype=dtype)
        return cls(zeros, zeros.clone())


class GaussianMixture:
    """Per-row mixtures of diagonal Gaussians.

    ``means`` and ``logvars`` have shape (B, K, D) and ``weights`` (B, K) sums to one over
    K in every row; components with weight zero are ignored.
    """

    def __init__(self, means: torch.Tensor, logvars: torch.Tensor, weights: torch.Tensor):
        self.means = means
        self.logvars = logvars.clamp(LOGVAR_MIN, LOGVAR_MAX)
        self.weights = weights

    @property
    def mean(self) -> torch.Tensor:
        """Mean of each mixture: the weighted average of component means, shape (B, D)."""
        return torch.einsum("bk,bkd->bd", self.weights, self.means)

    @property
    def logvar(self) -> torch.Tensor:
        """Log of the total variance of each mixture (within plus between components), shape (B, D)."""
        second_moment = torch.einsum("bk,bkd->bd", self.weights, self.logvars.exp() + self.means.pow(2))
        return torch.log((second_moment - self.mean.pow(2)).clamp_min(1e-12))

    def mode(self) -> torch.Tensor:
        return self.mean

    def components(self) -> DiagonalGaussian:
        """Return every component as one flat batch of shape (B * K, D)."""
        batch, count, dim = self.means.shape
        return DiagonalGaussian(self.means.reshape(batch * count, dim), self.logvars.reshape(batch * count, dim))

    def choose(self, generator: torch.Generator | None = None) -> DiagonalGaussian:
        """Pick one component per row with probability equal to its weight."""
        index = torch.multinomial(self.weights, 1, generator=generator).squeeze(1)  # (B,)
        rows = torch.arange(self.means.shape[0], device=self.means.device)
        return DiagonalGaussian(self.means[rows, index], self.logvars[rows, index])

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.choose(generator).sample(generator)

    def kl(self) -> torch.Tensor:
        """Weighted mean of the component KLs to the prior, shape (B,).

        By convexity of the KL this bounds the mixture's own KL from above, the usual
        surrogate in mixture-of-experts VAEs (Shi et al. 2019, MMVAE).
        """
        batch, count, _ = self.means.shape
        kls = self.components().kl().reshape(batch, count)  # (B, K)
        return torch.sum(self.weights * kls, dim=1)
