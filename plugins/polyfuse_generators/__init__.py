"""Built-in latent generators for polyfuse: the VAE prior, a conditional GAN and a diffusion model."""

from .diffusion import DiffusionConfig, DiffusionGenerator
from .gan import GANConfig, GANGenerator
from .vae import VAEPriorConfig, VAEPriorGenerator

__all__ = ["DiffusionConfig", "DiffusionGenerator", "GANConfig", "GANGenerator", "VAEPriorConfig", "VAEPriorGenerator"]
