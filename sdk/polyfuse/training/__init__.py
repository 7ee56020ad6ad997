"""Training of the multimodal VAE: settings, loop, checkpoints and the manifest-to-model run."""

from .checkpoint import TrainingState, load_checkpoint, save_checkpoint
from .config import ModalitySpec, RunConfig, TrainingConfig
from .run import train
from .trainer import Trainer, TrainOutput

__all__ = [
    "ModalitySpec",
    "RunConfig",
    "TrainOutput",
    "Trainer",
    "TrainingConfig",
    "TrainingState",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]
