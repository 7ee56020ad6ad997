"""Plugin entry point that registers the built-in latent generators with polyfuse."""

from polyfuse.hookspecs import hookimpl

from .diffusion import DiffusionGenerator
from .gan import GANGenerator
from .vae import VAEPriorGenerator


@hookimpl
def register_generators(register):
    """Register the ``vae``, ``gan`` and ``diffusion`` generators."""
    register(VAEPriorGenerator)
    register(GANGenerator)
    register(DiffusionGenerator)
