"""The plugin contract: every hook a polyfuse plugin may implement.

A plugin is a module (or object) listed under the ``polyfuse`` entry-point group whose
functions carry the :data:`hookimpl` marker. Contribution hooks receive a ``register``
callback instead of returning values, so the host can check each name and record which
plugin and distribution provided it.

Hooks are grouped by the phase in which the host calls them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from .datasets import DatasetRecipe
    from .generator import Generator
    from .modality import Modality

PROJECT_NAME = "polyfuse"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# ---------------------------------------------------------------------------
# Registration phase: called once, the first time a registry is needed.
# ---------------------------------------------------------------------------


@hookspec
def register_modalities(register: Callable[[type[Modality]], None]) -> None:
    """Contribute modality plugins.

    Called once per process, when the host first needs the modality registry (training,
    loading a saved model, ``polyfuse plugins``).

    :param register: call ``register(ModalityClass)`` once per modality. The class must
        subclass :class:`polyfuse.Modality` and set a unique lowercase ``name`` (for
        example ``"image"``). A name that is already taken, or is not a lowercase
        identifier, is rejected with a :class:`~polyfuse.errors.PluginLoadWarning` and
        the class is skipped.
    :return: nothing; return values are ignored.
    """


@hookspec
def register_generators(register: Callable[[type[Generator]], None]) -> None:
    """Contribute latent generators (VAE prior, GAN, diffusion, ...).

    Called once per process, when the host first needs the generator registry.

    :param register: call ``register(GeneratorClass)`` once per generator. The class must
        subclass :class:`polyfuse.Generator` and set a unique lowercase ``name``.
        Duplicates and invalid names are rejected as for modalities.
    :return: nothing; return values are ignored.
    """


@hookspec
def register_datasets(register: Callable[[type[DatasetRecipe]], None]) -> None:
    """Contribute data set recipes for ``polyfuse datasets build``.

    Called once per process, when the host first needs the recipe registry.

    :param register: call ``register(RecipeClass)`` once per recipe. The class must
        subclass :class:`polyfuse.DatasetRecipe` and set a unique ``name``, which may
        contain hyphens (for example ``"sklearn-digits"``).
    :return: nothing; return values are ignored.
    """
