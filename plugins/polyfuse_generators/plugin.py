"""Entry point of the built-in latent generators."""

from polyfuse.hookspecs import hookimpl

from .diffusion import DiffusionGenerator
from .gan import GANGenerator
from .vae import VAEPriorGenerator


@hookimpl
def register_generators(register):
    register(VAEPriorGenerator)
    register(GANGenerator)
    register(DiffusionGenerator)
