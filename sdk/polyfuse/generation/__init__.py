"""Cross-modal generation: generator training and storage, conditions, sampling and writing samples."""

from .api import GenerationOutput, GenerationPipeline
from .conditions import condition_from_batch, encode_condition
from .files import WrittenSamples, save_generation
from .latents import LatentBatch, LatentDataset, TrainingPairs, encode_latent_dataset, make_training_pairs
from .run import GeneratorRunOutput, train_generator
from .store import load_generator, resolve_generator, save_generator, saved_generators
from .training import GeneratorTrainer, GeneratorTrainingConfig

__all__ = [
    "GenerationOutput",
    "GenerationPipeline",
    "GeneratorRunOutput",
    "GeneratorTrainer",
    "GeneratorTrainingConfig",
    "LatentBatch",
    "LatentDataset",
    "TrainingPairs",
    "WrittenSamples",
    "condition_from_batch",
    "encode_condition",
    "encode_latent_dataset",
    "load_generator",
    "make_training_pairs",
    "resolve_generator",
    "save_generation",
    "save_generator",
    "saved_generators",
    "train_generator",
]
