"""Benchmark: polyfuse side by side with MultiVae's MoPoE and MMVAE+ on the paired digits set, in one process.

    python benchmarks/multivae_comparison.py --source ../shared/data --threads 2

1. Builds the digits set (or reads the build given by ``--data``) and prepares image, audio
   and sensor with polyfuse's own modality plugins. MultiVae gets the same values as
   fixed-size tensors: images (1, 28, 28), the normalised log-mel (1, 40, 63) that polyfuse's
   audio front end computes, and the sensor values (3, 64) without the observed-mask row.
2. Trains one judge per modality: polyfuse's classifier (the modality's encoder backbone and
   a linear head) on the real, preprocessed training split.
3. Measures training throughput in short interleaved phases (polyfuse, MoPoE, MMVAE+,
   polyfuse), so drift in the load from other jobs shows up.
4. Trains every model for the same epochs and batch size: polyfuse with the digits recipe
   config, MoPoE and MMVAE+ with MultiVae's default networks. polyfuse's weights are copied
   after some epoch counts, to find when it reaches the best MultiVae model's quality.
   polyfuse's diffusion generator is then fitted on the trained model's latents, and
   "polyfuse+diffusion" is measured as a second polyfuse contender whose budget includes it.
5. Measures, for every model, linear-probe digit accuracy from the fused latent and from
   each modality alone, coherence of the six single-source cross-modal pairs, and the
   coherence of unconditional joint samples.

Every timed phase records the thread count and the load average before and after it. The
script prints a Markdown table and writes ``results.json`` in the work folder. Needs
``pip install -e ".[benchmark]"``, which installs MultiVae.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from polyfuse import MultimodalVAE, read_manifest
from polyfuse.config import require
from polyfuse.data import prepare_records
from polyfuse.data.dataset import PreparedDataset
from polyfuse.encoding import encode_prepared
from polyfuse.evaluation import fit_linear_probe
from polyfuse.evaluation.classifiers import ClassifierConfig, ModalityClassifier, train_classifier
from polyfuse.generation import GenerationPipeline
from polyfuse.generation.conditions import condition_from_batch
from polyfuse.modality import Modality, ModalityBatch
from polyfuse.plugins import get_generator_class
from polyfuse.training import RunConfig, Trainer, TrainingState
from polyfuse_audio.features import LogMelSpectrogram, normalize_peak
from polyfuse_audio.networks import GENERATED_PEAK

logger = logging.getLogger("multivae_comparison")

FIELDS = ("image", "audio", "sensor")
MULTIVAE_MODELS = ("MoPoE", "MMVAE+")
PROBES = ("fused", *FIELDS)
# "sample" decodes one draw from each condition's posterior, "mean" decodes the posterior mean.
POSTERIOR_MODES = ("sample", "mean")
# Decoder likelihood of every MultiVae modality: the Laplace distribution with scale 0.75 that
# MultiVae 1.0's own MMVAE+ reproduction on PolyMNIST uses (examples/mmvae_plus/mmnist.py).
DECODER_DISTRIBUTION = "laplace"
DECODER_SCALE = 0.75
# MMVAEPlusConfig has no default for the size of each modality's private latent; the same
# reproduction script uses 32.
MMVAE_PLUS_PRIVATE_DIM = 32
# In a trial on two shared x86_64 cores (one thread, load average 6 to 8), MultiVae's default
# MMVAE+ objective (K=10 importance samples, "dreg_looser") trained at 26 samples/s against
# 768 with K=1. The same reproduction script trains K=1 with "iwae_looser" for its 150-epoch runs.
MMVAE_PLUS_K = 1
MMVAE_PLUS_LOSS = "iwae_looser"
CHUNK_SIZE = 250  # records per encoding and generation call, as in polyfuse.evaluation.coherence
SNAPSHOT_EPOCHS = (5, 10, 15, 20, 30, 40)
DIFFUSION_NAME = "polyfuse+diffusion"  # polyfuse's VAE with its diffusion generator producing the latents  # epoch counts after which polyfuse's probes are measured


@dataclass(frozen=True)
class ComparisonConfig:
    """Settings of one comparison run; the batch size and learning rate come from the run config."""

    epochs: int  # training epochs of every model
    threads: int = 2  # torch and BLAS threads of every phase
    seed: int = 0  # seeds initialisation, batch order, sampling and the judges
    snapshot_epochs: tuple[int, ...] = SNAPSHOT_EPOCHS  # polyfuse probe points; later ones than epochs are dropped
    throughput_epochs: int = 3  # epochs of each interleaved throughput phase
    classifier_epochs: int = 15  # epochs of each judge
    joint_samples: int = 1000  # unconditional samples for joint coherence
    generator_epochs: int = 300  # epochs of the diffusion generator fitted on polyfuse's latents; 0 leaves it out

    def __post_init__(self) -> None:
        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.threads >= 1, f"threads must be >= 1, got {self.threads}")
        require(all(epochs >= 1 for epochs in self.snapshot_epochs), f"snapshot epochs must be >= 1, got {self.snapshot_epochs}")
        require(self.throughput_epochs >= 1, f"throughput_epochs must be >= 1, got {self.throughput_epochs}")
        require(self.classifier_epochs >= 1, f"classifier_epochs must be >= 1, got {self.classifier_epochs}")
        require(self.joint_samples >= 1, f"joint_samples must be >= 1, got {self.joint_samples}")
        require(self.generator_epochs >= 0, f"generator_epochs must be >= 0, got {self.generator_epochs}")

    @property
    def probe_epochs(self) -> tuple[int, ...]:
        """Epoch counts at which polyfuse's weights are copied: the snapshots within the budget, and the budget."""
        return tuple(sorted({epochs for epochs in self.snapshot_epochs if epochs < self.epochs} | {self.epochs}))


@dataclass
class Split:
    """One split in both libraries' forms."""

    dataset: PreparedDataset  # polyfuse's preprocessed records
    tensors: dict[str, torch.Tensor]  # MultiVae's inputs per field, (N, ...) with values in [0, 1]
    labels: np.ndarray  # (N,) digit of each record


@dataclass
class PreparedData:
    """The run config, the modality plugins and both splits."""

    run_config: RunConfig
    modalities: dict[str, Modality]
    space: MultiVaeSpace
    train: Split
    test: Split


@dataclass
class TimedPhase:
    """Wall time of one training phase and the machine's state around it."""

    name: str
    samples: int  # training records processed: epochs times records
    seconds: float
    threads: int
    load_before: tuple[float, float, float]  # os.getloadavg(): 1, 5 and 15 minutes
    load_after: tuple[float, float, float]

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "seconds": round(self.seconds, 2), "samples_per_second": round(self.samples_per_second, 1)}


@dataclass
class Snapshot:
    """polyfuse's weights after some epochs, and the training time spent to get there."""

    epochs: int
    seconds: float  # training wall time up to the end of this epoch, without the time spent copying snapshots
    state: dict[str, torch.Tensor]


@dataclass
class PolyfuseRun:
    """A trained polyfuse model with its timing and snapshots."""

    model: MultimodalVAE
    phase: TimedPhase
    snapshots: list[Snapshot] = field(default_factory=list)


class MultiVaeSpace:
    """The affine maps between polyfuse's preprocessed values and MultiVae's inputs in [0, 1].

    MultiVae's default decoders end in a sigmoid, so every input must lie in [0, 1]. Images
    already do. The log-mel in [-1, 1] is shifted and halved, and each sensor channel is
    scaled with its minimum and maximum over the training split. Outputs go back through the
    inverse maps, and generated log-mels through Griffin-Lim to waveforms, before judging.
    """

    def __init__(self, modalities: Mapping[str, Modality], sensor_low: torch.Tensor, sensor_high: torch.Tensor):
        self.modalities = dict(modalities)
        audio = modalities["audio"].config
        self.front_end = LogMelSpectrogram(
            audio.sample_rate, audio.n_fft, audio.hop_length, audio.n_mels, audio.f_min, audio.max_frequency, audio.top_db
        )
        self.channels = modalities["sensor"].config.channels
        self.sensor_low = sensor_low  # (channels, 1)
        self.sensor_scale = (sensor_high - sensor_low).clamp_min(1e-6)  # (channels, 1)

    @classmethod
    def fit(cls, modalities: Mapping[str, Modality], train: PreparedDataset) -> MultiVaeSpace:
        """Take the sensor range from the training split."""
        series = _stack_field(train, "sensor")[:, : modalities["sensor"].config.channels]  # (N, channels, T)
        return cls(modalities, series.amin(dim=(0, 2)).unsqueeze(1), series.amax(dim=(0, 2)).unsqueeze(1))

    @torch.no_grad()
    def to_multivae(self, dataset: PreparedDataset) -> dict[str, torch.Tensor]:
        """Return MultiVae's input tensors for every record of ``dataset``."""
        series = _stack_field(dataset, "sensor")  # (N, channels + 1, T)
        if not bool((series[:, self.channels] == 1).all()):
            raise ValueError("some sensor series have unobserved steps; MultiVae's inputs carry no mask row, so they need complete series")
        waveforms = _stack_field(dataset, "audio")  # (N, 1, num_samples)
        log_mels = torch.cat([self.front_end(waveforms[start : start + CHUNK_SIZE]) for start in range(0, len(waveforms), CHUNK_SIZE)])
        return {
            "image": _stack_field(dataset, "image"),
            "audio": (log_mels + 1.0) / 2.0,  # (N, 1, n_mels, frames), [-1, 1] -> [0, 1]
            "sensor": (series[:, : self.channels] - self.sensor_low) / self.sensor_scale,  # (N, channels, T)
        }

    @torch.no_grad()
    def to_polyfuse(self, field_name: str, values: torch.Tensor, generator: torch.Generator) -> ModalityBatch:
        """Turn MultiVae outputs (B, ...) of one field into a batch in polyfuse's preprocessed space."""
        if field_name == "audio":
            audio = self.modalities["audio"].config
            log_mel = values * 2.0 - 1.0  # (B, 1, n_mels, frames), [0, 1] -> [-1, 1]
            waveform = self.front_end.invert(log_mel, audio.num_samples, audio.griffin_lim_iterations, generator)
            # The same peak as polyfuse's own audio decoder gives its waveforms.
            data = normalize_peak(waveform, GENERATED_PEAK).unsqueeze(1)  # (B, num_samples) -> (B, 1, num_samples)
        elif field_name == "sensor":
            series = values * self.sensor_scale + self.sensor_low  # (B, channels, T)
            data = torch.cat([series, torch.ones_like(series[:, :1])], dim=1)  # every step observed: (B, channels + 1, T)
        else:
            data = values.clamp(0.0, 1.0)
        return self.modalities[field_name].collate(list(data))


class PolyfuseContender:
    """A trained polyfuse model behind the interface that the measurements use."""

    def __init__(self, model: MultimodalVAE, name: str = "polyfuse", generator: Any = None):
        self.name = name
        self.model = model.eval()
        if generator is not None:
            # A fitted generator samples its own latents, so both posterior modes use it unchanged.
            self.pipelines = {mode: GenerationPipeline(model, generator) for mode in POSTERIOR_MODES}
        else:
            vae = get_generator_class("vae")
            self.pipelines = {mode: GenerationPipeline(model, vae(vae.config_class(posterior=mode), model.latent_dim)) for mode in POSTERIOR_MODES}

    def latents(self, split: Split, fields: Sequence[str]) -> np.ndarray:
        """Return the posterior mean (N, latent_dim) of ``fields`` fused, for every record of ``split``."""
        return encode_prepared(self.model, split.dataset, fields, batch_size=CHUNK_SIZE).mean

    def generate(self, split: Split, rows: range, source: str, targets: Sequence[str], posterior: str, generator: torch.Generator) -> dict[str, ModalityBatch]:
        """Generate ``targets`` from ``source`` for ``rows`` of ``split``, one sample per row."""
        batch = split.dataset.batch(list(rows), self.model.modalities)
        condition = condition_from_batch(self.model, batch, [source])
        output = self.pipelines[posterior](condition, targets=targets, num_samples=condition.num_rows, generator=generator)
        return output.outputs

    def sample_joint(self, count: int, generator: torch.Generator) -> dict[str, ModalityBatch]:
        """Decode every field from ``count`` latents drawn from the prior."""
        return self.pipelines["sample"](None, targets=FIELDS, num_samples=count, generator=generator).outputs


class MultiVaeContender:
    """A trained MultiVae model behind the interface that the measurements use, reached only through its public API."""

    def __init__(self, name: str, model: Any, space: MultiVaeSpace):
        self.name = name
        self.model = model.eval()
        self.space = space

    @torch.no_grad()
    def latents(self, split: Split, fields: Sequence[str]) -> np.ndarray:
        """Return MultiVae's posterior mean of ``fields`` (its ``encode(..., return_mean=True)``) for every record."""
        means = []
        for rows in _chunks(len(split.labels)):
            inputs = self._inputs(split, rows)
            means.append(self.model.encode(inputs, cond_mod=list(fields), return_mean=True).z.cpu().numpy())
        return np.concatenate(means)

    @torch.no_grad()
    def generate(self, split: Split, rows: range, source: str, targets: Sequence[str], posterior: str, generator: torch.Generator) -> dict[str, ModalityBatch]:
        """Generate ``targets`` from ``source`` for ``rows`` of ``split`` with MultiVae's ``predict``."""
        output = self.model.predict(self._inputs(split, rows), cond_mod=[source], gen_mod=list(targets), return_mean=posterior == "mean")
        return {target: self.space.to_polyfuse(target, output[target], generator) for target in targets}

    @torch.no_grad()
    def sample_joint(self, count: int, generator: torch.Generator) -> dict[str, ModalityBatch]:
        """Decode every field from ``count`` latents drawn from the model's prior."""
        output = self.model.decode(self.model.generate_from_prior(count), list(FIELDS))
        # generate_from_prior drops the batch axis when count is 1.
        return {name: self.space.to_polyfuse(name, output[name].reshape(count, *self.model.input_dims[name]), generator) for name in FIELDS}

    @staticmethod
    def _inputs(split: Split, rows: range) -> Any:
        from multivae.data import MultimodalBaseDataset

        return MultimodalBaseDataset(data={name: values[rows.start : rows.stop] for name, values in split.tensors.items()})


# -- data ------------------------------------------------------------------------


def build_digits(source: Path, out: Path, seed: int, limit: int | None) -> Path:
    """Build the digits set into ``out`` with the polyfuse CLI and return ``out``."""
    command = [sys.executable, "-m", "polyfuse", "datasets", "build", "digits", "--source", str(source), "--out", str(out), "--seed", str(seed), "-q"]
    if limit:
        command += ["--limit", str(limit)]
    logger.info("$ polyfuse %s", " ".join(command[3:]))
    subprocess.run(command, check=True)
    return out


def prepare_data(data_dir: Path, threads: int = 1) -> PreparedData:
    """Read and preprocess both splits of a digits build with polyfuse's plugins, and derive MultiVae's tensors."""
    missing = [name for name in ("train.jsonl", "test.jsonl", "polyfuse-train.json") if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{data_dir} is not a digits build: {', '.join(missing)} missing; run 'polyfuse datasets build digits' or pass --source")
    run_config = RunConfig.from_file(data_dir / "polyfuse-train.json").select_fields(FIELDS)
    modalities = run_config.build_modalities()
    datasets = {
        name: prepare_records(read_manifest(data_dir / f"{name}.jsonl").records, modalities, workers=threads, progress=False)
        for name in ("train", "test")
    }
    space = MultiVaeSpace.fit(modalities, datasets["train"])
    splits = {name: Split(dataset, space.to_multivae(dataset), np.asarray(dataset.labels)) for name, dataset in datasets.items()}
    return PreparedData(run_config, modalities, space, splits["train"], splits["test"])


def train_judges(data: PreparedData, config: ComparisonConfig) -> tuple[dict[str, ModalityClassifier], dict[str, float]]:
    """Train one classifier per field on the real training split; return them and their test accuracy."""
    judges, accuracy = {}, {}
    for name in FIELDS:
        settings = ClassifierConfig(epochs=config.classifier_epochs, seed=config.seed)
        judges[name] = train_classifier(data.modalities[name], data.train.dataset, settings).classifier
        accuracy[name] = judges[name].accuracy(data.test.dataset)
        logger.info("judge %s: test accuracy %.4f", name, accuracy[name])
    return judges, accuracy


def judge_round_trip(data: PreparedData, judges: Mapping[str, ModalityClassifier], seed: int) -> dict[str, float]:
    """Return each judge's accuracy on the real test split sent to MultiVae's space and back.

    Images and sensor series come back unchanged. Audio comes back through Griffin-Lim, as
    generated audio of both libraries does, so its figure bounds the coherence of audio targets.
    """
    generator = torch.Generator().manual_seed(seed)
    accuracy = {}
    for name in FIELDS:
        correct = 0
        for rows in _chunks(len(data.test.labels)):
            batch = data.space.to_polyfuse(name, data.test.tensors[name][rows.start : rows.stop], generator)
            correct += int(np.sum(judges[name].predict(batch) == data.test.labels[rows.start : rows.stop]))
        accuracy[name] = correct / len(data.test.labels)
    logger.info("judges after the round trip through MultiVae's space: %s", _rounded(accuracy))
    return accuracy


# -- training --------------------------------------------------------------------


def train_polyfuse(data: PreparedData, config: ComparisonConfig, work: Path, epochs: int, snapshot_epochs: Sequence[int] = (), name: str = "polyfuse") -> PolyfuseRun:
    """Train polyfuse with the run config for ``epochs``, copying its weights after each of ``snapshot_epochs``.

    The trainer writes its checkpoint after every epoch, as ``polyfuse train`` does, and
    that time counts.
    """
    run_config = data.run_config.with_training(epochs=epochs, num_threads=config.threads, seed=config.seed)
    torch.manual_seed(config.seed)
    model = MultimodalVAE(data.modalities, run_config.model)
    batches_per_epoch = math.ceil(len(data.train.labels) / run_config.training.batch_size)
    recorder = _SnapshotRecorder(model, batches_per_epoch, snapshot_epochs)
    trainer = Trainer(
        model, data.train.dataset, run_config.training, checkpoint_path=work / "checkpoints" / "last.safetensors",
        run_config=run_config.to_dict(), on_step=recorder, progress=False,
    )
    recorder.start()
    phase = timed_phase(name, epochs * len(data.train.labels), config.threads, lambda: trainer.fit(resume=False))
    return PolyfuseRun(model.eval(), phase, recorder.snapshots)


def train_diffusion(model: MultimodalVAE, data: PreparedData, config: ComparisonConfig, work: Path) -> tuple[Any, TimedPhase]:
    """Fit polyfuse's diffusion generator with its default config on the latents of the trained ``model``."""
    from polyfuse.generation import GeneratorTrainingConfig

    diffusion = get_generator_class("diffusion")
    torch.manual_seed(config.seed)
    generator = diffusion(None, model.latent_dim)
    training = GeneratorTrainingConfig(epochs=config.generator_epochs, seed=config.seed, num_threads=config.threads)
    samples = config.generator_epochs * len(data.train.labels)
    phase = timed_phase(
        "polyfuse diffusion", samples, config.threads,
        lambda: generator.fit(model, data.train.dataset, training=training, checkpoint_path=work / "last.safetensors", resume=False, progress=False),
    )
    return generator.eval(), phase


def build_multivae(kind: str, input_dims: Mapping[str, tuple[int, ...]], latent_dim: int) -> Any:
    """Return an untrained MultiVae model with its default networks, built from ``input_dims``."""
    from multivae.models import MMVAEPlus, MMVAEPlusConfig, MoPoE, MoPoEConfig

    common = {
        "n_modalities": len(input_dims),
        "latent_dim": latent_dim,
        "input_dims": dict(input_dims),
        "decoders_dist": {name: DECODER_DISTRIBUTION for name in input_dims},
        "decoder_dist_params": {name: {"scale": DECODER_SCALE} for name in input_dims},
    }
    if kind == "MoPoE":
        return MoPoE(MoPoEConfig(**common))
    if kind == "MMVAE+":
        return MMVAEPlus(MMVAEPlusConfig(**common, modalities_specific_dim=MMVAE_PLUS_PRIVATE_DIM, K=MMVAE_PLUS_K, loss=MMVAE_PLUS_LOSS))
    raise ValueError(f"unknown MultiVae model {kind!r}; choose one of {', '.join(MULTIVAE_MODELS)}")


def train_multivae(kind: str, data: PreparedData, config: ComparisonConfig, work: Path, epochs: int) -> tuple[Any, TimedPhase]:
    """Train a MultiVae model with its BaseTrainer for ``epochs`` and return the model it saves, with the timing.

    The batch size and learning rate are polyfuse's; the optimizer is MultiVae's default (Adam).
    """
    from multivae.data import MultimodalBaseDataset
    from multivae.trainers import BaseTrainer, BaseTrainerConfig

    training = data.run_config.training
    torch.manual_seed(config.seed)
    input_dims = {name: tuple(values.shape[1:]) for name, values in data.train.tensors.items()}
    model = build_multivae(kind, input_dims, data.run_config.model.latent_dim)
    trainer_config = BaseTrainerConfig(
        output_dir=str(work), per_device_train_batch_size=training.batch_size, num_epochs=epochs,
        learning_rate=training.learning_rate, seed=config.seed, no_cuda=True,
    )
    dataset = MultimodalBaseDataset(data=data.train.tensors, labels=torch.as_tensor(data.train.labels))
    trainer = BaseTrainer(model, train_dataset=dataset, training_config=trainer_config)
    phase = timed_phase(kind, epochs * len(dataset), config.threads, trainer.train)
    # The trainer saves the epoch with the lowest training loss as its final model.
    final = type(model).load_from_folder(os.path.join(trainer.training_dir, "final_model"))
    final.device = "cpu"  # read by generate_from_prior; load_from_folder leaves it unset
    return final, phase


def measure_throughput(data: PreparedData, config: ComparisonConfig, work: Path) -> list[TimedPhase]:
    """Time short training runs in the order polyfuse, MoPoE, MMVAE+, polyfuse, each from fresh weights."""
    phases = [train_polyfuse(data, config, work / "polyfuse-1", config.throughput_epochs, name="polyfuse").phase]
    for kind in MULTIVAE_MODELS:
        phases.append(train_multivae(kind, data, config, work / kind, config.throughput_epochs)[1])
    phases.append(train_polyfuse(data, config, work / "polyfuse-2", config.throughput_epochs, name="polyfuse").phase)
    for phase in phases:
        logger.info("throughput %s: %.1f samples/s (load %s -> %s)", phase.name, phase.samples_per_second, phase.load_before, phase.load_after)
    return phases


def timed_phase(name: str, samples: int, threads: int, action: Callable[[], Any]) -> TimedPhase:
    """Run ``action`` and return its wall time with the load average before and after."""
    load_before = _load()
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    return TimedPhase(name, samples, seconds, threads, load_before, _load())


# -- measurements ------------------------------------------------------------------


def probe_accuracies(contender: Any, data: PreparedData) -> dict[str, float]:
    """Return the test accuracy of a linear probe fitted on training latents, from all fields fused and from each alone."""
    accuracy = {}
    for probe, fields in zip(PROBES, (FIELDS, *((name,) for name in FIELDS))):
        train, test = contender.latents(data.train, fields), contender.latents(data.test, fields)
        accuracy[probe] = fit_linear_probe(train, data.train.labels, test, data.test.labels).accuracy
    return accuracy


def conditional_coherence(contender: Any, judges: Mapping[str, ModalityClassifier], split: Split, posterior: str, seed: int) -> dict[str, float]:
    """Return, for each single-source pair "source->target", the share of generated targets that the judge gives the record's digit.

    Chunks, seeding and the order of targets follow ``polyfuse.evaluation.coherence.conditional_coherence``,
    so for a polyfuse model both give the same figures.
    """
    scores = {}
    for source in FIELDS:
        targets = tuple(name for name in FIELDS if name != source)
        _seed_everything(seed)
        generator = torch.Generator().manual_seed(seed)
        correct = dict.fromkeys(targets, 0)
        for rows in _chunks(len(split.labels)):
            outputs = contender.generate(split, rows, source, targets, posterior, generator)
            labels = split.labels[rows.start : rows.stop]
            for target in targets:
                correct[target] += int(np.sum(judges[target].predict(outputs[target]) == labels))
        scores.update({f"{source}->{target}": correct[target] / len(split.labels) for target in targets})
    return scores


def joint_coherence(contender: Any, judges: Mapping[str, ModalityClassifier], count: int, seed: int) -> float:
    """Return the share of ``count`` unconditional samples whose three fields the judges give one digit."""
    _seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    coherent = 0
    for rows in _chunks(count):
        outputs = contender.sample_joint(len(rows), generator)
        predictions = np.stack([judges[name].predict(outputs[name]) for name in FIELDS])  # (fields, samples)
        coherent += int((predictions == predictions[0]).all(axis=0).sum())
    return coherent / count


def evaluate(contender: Any, judges: Mapping[str, ModalityClassifier], data: PreparedData, config: ComparisonConfig) -> dict[str, Any]:
    """Measure probes, conditional coherence in both posterior modes, and joint coherence."""
    started = time.perf_counter()
    result: dict[str, Any] = {"probe_accuracy": probe_accuracies(contender, data), "coherence": {}}
    for mode in POSTERIOR_MODES:
        pairs = conditional_coherence(contender, judges, data.test, mode, config.seed)
        result["coherence"][mode] = {**pairs, "mean": float(np.mean(list(pairs.values())))}
    result["joint_coherence"] = joint_coherence(contender, judges, config.joint_samples, config.seed)
    result["evaluation_seconds"] = round(time.perf_counter() - started, 1)
    logger.info("%s: %s", contender.name, json.dumps(_rounded(result)))
    return result


def probe_snapshots(run: PolyfuseRun, data: PreparedData) -> list[dict[str, Any]]:
    """Measure the probes of each polyfuse snapshot."""
    rows = []
    for snapshot in run.snapshots:
        model = MultimodalVAE(data.modalities, data.run_config.model)
        model.load_state_dict(snapshot.state)
        accuracy = probe_accuracies(PolyfuseContender(model), data)
        rows.append({"epochs": snapshot.epochs, "seconds": round(snapshot.seconds, 2), "probe_accuracy": accuracy})
        logger.info("polyfuse after %d epochs (%.1f s): %s", snapshot.epochs, snapshot.seconds, _rounded(accuracy))
    return rows


def time_to_quality(snapshots: Sequence[Mapping[str, Any]], target: Mapping[str, float]) -> Mapping[str, Any] | None:
    """Return the first snapshot whose every probe accuracy is at least the target's, or None."""
    for snapshot in sorted(snapshots, key=lambda row: row["epochs"]):
        if all(snapshot["probe_accuracy"][probe] >= target[probe] for probe in target):
            return snapshot
    return None


# -- the run -------------------------------------------------------------------------


def run_comparison(data: PreparedData, config: ComparisonConfig, work: Path) -> dict[str, Any]:
    """Run steps 2 to 5 of the module docstring and return the report, without the command and the machine."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(config.threads)
    with threadpool_limits(limits=config.threads):
        # 2. Judges, and how well they score real test data after MultiVae's maps.
        judges, judge_accuracy = train_judges(data, config)
        round_trip = judge_round_trip(data, judges, config.seed)

        # 3. Interleaved throughput.
        throughput = measure_throughput(data, config, work / "throughput")

        # 4. Full training at the same budget.
        polyfuse_run = train_polyfuse(data, config, work / "polyfuse", config.epochs, config.probe_epochs)
        multivae_runs = {kind: train_multivae(kind, data, config, work / kind, config.epochs) for kind in MULTIVAE_MODELS}

        diffusion = train_diffusion(polyfuse_run.model, data, config, work / "polyfuse-diffusion") if config.generator_epochs else None

        # 5. Measurements.
        results = {"polyfuse": evaluate(PolyfuseContender(polyfuse_run.model), judges, data, config)}
        if diffusion is not None:
            contender = PolyfuseContender(polyfuse_run.model, DIFFUSION_NAME, generator=diffusion[0])
            results[DIFFUSION_NAME] = evaluate(contender, judges, data, config)
        for kind, (model, _) in multivae_runs.items():
            results[kind] = evaluate(MultiVaeContender(kind, model, data.space), judges, data, config)
        snapshots = probe_snapshots(polyfuse_run, data)

    # 6. Ratios and goals.
    phases = {"polyfuse": polyfuse_run.phase, **{kind: phase for kind, (_, phase) in multivae_runs.items()}}
    if diffusion is not None:
        # The diffusion contender's budget is the VAE's training plus the generator's.
        vae_phase, generator_phase = polyfuse_run.phase, diffusion[1]
        phases[DIFFUSION_NAME] = TimedPhase(
            DIFFUSION_NAME, vae_phase.samples, vae_phase.seconds + generator_phase.seconds, vae_phase.threads,
            vae_phase.load_before, generator_phase.load_after,
        )
    return {
        "settings": {**dataclasses.asdict(config), "batch_size": data.run_config.training.batch_size,
                     "learning_rate": data.run_config.training.learning_rate, "latent_dim": data.run_config.model.latent_dim,
                     "train_records": len(data.train.labels), "test_records": len(data.test.labels)},
        "judge_test_accuracy": judge_accuracy,
        "judge_round_trip_accuracy": round_trip,
        "throughput_phases": [phase.to_dict() for phase in throughput],
        "training": {name: phase.to_dict() for name, phase in phases.items()},
        "models": results,
        "polyfuse_snapshots": snapshots,
        "comparison": compare(results, throughput, phases, snapshots, config.epochs),
    }


def compare(results: Mapping[str, Any], throughput: Sequence[TimedPhase], phases: Mapping[str, TimedPhase], snapshots: Sequence[Mapping[str, Any]], epochs: int) -> dict[str, Any]:
    """Compute the throughput ratios, the time to equal quality and whether each goal is met."""
    # 1. Throughput: the mean rate of each model's interleaved phases.
    rates: dict[str, list[float]] = {}
    for phase in throughput:
        rates.setdefault(phase.name, []).append(phase.samples_per_second)
    mean_rates = {name: float(np.mean(values)) for name, values in rates.items()}
    comparison: dict[str, Any] = {"throughput_ratio": {kind: mean_rates["polyfuse"] / mean_rates[kind] for kind in MULTIVAE_MODELS}}

    # 2. Time for polyfuse to reach every probe accuracy of the MultiVae model with the best fused probe.
    best = max(MULTIVAE_MODELS, key=lambda kind: results[kind]["probe_accuracy"]["fused"])
    reached = time_to_quality(snapshots, results[best]["probe_accuracy"])
    comparison.update({"best_multivae": best, "quality_target": results[best]["probe_accuracy"], "polyfuse_reaches_target": None})
    if reached is not None:
        comparison["polyfuse_reaches_target"] = {
            "epochs": reached["epochs"],
            "seconds": reached["seconds"],
            "multivae_seconds": round(phases[best].seconds, 2),
            # Wall times of two runs made one after the other, so load drift enters this ratio.
            "speedup_measured": phases[best].seconds / reached["seconds"],
            # Epochs ratio times the interleaved throughput ratio, which drift affects less.
            "speedup_from_interleaved_throughput": epochs / reached["epochs"] * comparison["throughput_ratio"][best],
        }

    # 3. Goals: the best polyfuse coherence above the best MultiVae figure, and at least 1.5 times faster at equal quality by both estimates.
    speedup = comparison["polyfuse_reaches_target"]
    ours = [name for name in results if name not in MULTIVAE_MODELS]
    goals = {
        f"coherence_{mode}_above_best_multivae": max(results[name]["coherence"][mode]["mean"] for name in ours)
        > max(results[kind]["coherence"][mode]["mean"] for kind in MULTIVAE_MODELS)
        for mode in POSTERIOR_MODES
    }
    goals["joint_coherence_above_best_multivae"] = max(results[name]["joint_coherence"] for name in ours) > max(
        results[kind]["joint_coherence"] for kind in MULTIVAE_MODELS
    )
    goals["speedup_at_equal_quality_at_least_1_5"] = speedup is not None and min(speedup["speedup_measured"], speedup["speedup_from_interleaved_throughput"]) >= 1.5
    comparison["goals"] = goals
    return comparison


# -- report ----------------------------------------------------------------------------


def markdown(report: Mapping[str, Any]) -> str:
    """Render the report as Markdown tables and short lines."""
    models, training = report["models"], report["training"]
    names = (*(name for name in models if name not in MULTIVAE_MODELS), *MULTIVAE_MODELS)
    settings = report["settings"]
    lines = [f"| measure | {' | '.join(names)} |", "| --- |" + " --- |" * len(names)]

    def row(label: str, values: Sequence[str]) -> None:
        lines.append(f"| {label} | {' | '.join(values)} |")

    for probe in PROBES:
        row(f"probe accuracy, {probe}", [f"{100 * models[name]['probe_accuracy'][probe]:.2f}%" for name in names])
    for pair in (key for key in models["polyfuse"]["coherence"]["sample"] if key != "mean"):
        row(f"coherence {pair.replace('->', ' -> ')}", [f"{models[name]['coherence']['sample'][pair]:.3f}" for name in names])
    row("mean single-source coherence", [f"{models[name]['coherence']['sample']['mean']:.3f}" for name in names])
    row("same, decoding the posterior mean", [f"{models[name]['coherence']['mean']['mean']:.3f}" for name in names])
    row(f"joint coherence ({settings['joint_samples']:,} prior samples)", [f"{models[name]['joint_coherence']:.3f}" for name in names])
    row(f"training time, {settings['epochs']} epochs (and the generator's {settings['generator_epochs']})", [f"{training[name]['seconds']:.0f} s" for name in names])
    row("samples/s over the full run", [f"{training[name]['samples_per_second']:.0f}" for name in names])
    interleaved = {name: [phase["samples_per_second"] for phase in report["throughput_phases"] if phase["name"] == name] for name in names}
    row("samples/s, interleaved phases", [" / ".join(f"{rate:.0f}" for rate in interleaved[name]) or "-" for name in names])

    comparison = report["comparison"]
    lines += ["", "Throughput ratio (interleaved phases): " + ", ".join(
        f"polyfuse / {kind} {ratio:.2f}" for kind, ratio in comparison["throughput_ratio"].items()) + "."]
    reached = comparison["polyfuse_reaches_target"]
    target = ", ".join(f"{probe} {100 * value:.2f}%" for probe, value in comparison["quality_target"].items())
    if reached is None:
        lines.append(f"Time to equal quality: polyfuse did not reach {comparison['best_multivae']}'s probe accuracies ({target}) within {settings['epochs']} epochs.")
    else:
        lines.append(
            f"Time to equal quality: polyfuse reached {comparison['best_multivae']}'s probe accuracies ({target}) after "
            f"{reached['epochs']} epochs in {reached['seconds']:.0f} s, against {reached['multivae_seconds']:.0f} s for "
            f"{comparison['best_multivae']}: {reached['speedup_measured']:.2f} times faster measured, "
            f"{reached['speedup_from_interleaved_throughput']:.2f} times from the epochs and the interleaved throughput."
        )
    lines += ["", "| polyfuse epochs | seconds | " + " | ".join(PROBES) + " |", "| --- | --- |" + " --- |" * len(PROBES)]
    for snapshot in report["polyfuse_snapshots"]:
        accuracy = " | ".join(f"{100 * snapshot['probe_accuracy'][probe]:.2f}%" for probe in PROBES)
        lines.append(f"| {snapshot['epochs']} | {snapshot['seconds']:.1f} | {accuracy} |")
    lines += ["", "Goals: " + ", ".join(f"{goal} {'met' if met else 'not met'}" for goal, met in comparison["goals"].items()) + "."]
    lines.append("Judges' accuracy on the real test split: " + ", ".join(f"{name} {value:.4f}" for name, value in report["judge_test_accuracy"].items())
                 + "; after the round trip through MultiVae's space: " + ", ".join(f"{name} {value:.4f}" for name, value in report["judge_round_trip_accuracy"].items()) + ".")
    lines.append("Load average (1, 5, 15 min) before -> after each timed phase: " + "; ".join(
        f"{phase['name']} {_format_load(phase['load_before'])} -> {_format_load(phase['load_after'])}"
        for phase in [*report["throughput_phases"], *training.values()]) + ".")
    if "machine" in report:
        lines.append(f"Machine: {report['machine']}; wall time {report['wall_seconds']:.0f} s.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="folder with mnist/, fsdd/ and pendigits/, to build the digits set")
    parser.add_argument("--data", type=Path, help="an existing digits build to use instead of building one")
    parser.add_argument("--work", type=Path, default=Path("runs/multivae-comparison"), help="output folder")
    parser.add_argument("--epochs", type=int, help="training epochs of every model (default: the run config's)")
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS threads of every phase")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data pairing, training, sampling and judges")
    parser.add_argument("--limit", type=int, help="records per split when building, for a quick run")
    parser.add_argument("--snapshot-epochs", default=",".join(map(str, SNAPSHOT_EPOCHS)), help="comma-separated epoch counts at which polyfuse's probes are measured")
    parser.add_argument("--throughput-epochs", type=int, default=3, help="epochs of each interleaved throughput phase")
    parser.add_argument("--classifier-epochs", type=int, default=15, help="epochs of each judge")
    parser.add_argument("--joint-samples", type=int, default=1000, help="unconditional samples for joint coherence")
    parser.add_argument("--generator-epochs", type=int, default=300, help="epochs of polyfuse's diffusion generator; 0 leaves it out")
    args = parser.parse_args()
    if (args.source is None) == (args.data is None):
        parser.error("pass either --source (to build the digits set) or --data (an existing build)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.perf_counter()

    # 1. Data, in both libraries' forms.
    data_dir = args.data or build_digits(args.source, args.work / "data", args.seed, args.limit)
    torch.set_num_threads(args.threads)
    data = prepare_data(data_dir, args.threads)
    config = ComparisonConfig(
        epochs=args.epochs or data.run_config.training.epochs, threads=args.threads, seed=args.seed,
        snapshot_epochs=tuple(int(value) for value in args.snapshot_epochs.split(",") if value.strip()),
        throughput_epochs=args.throughput_epochs, classifier_epochs=args.classifier_epochs, joint_samples=args.joint_samples,
        generator_epochs=args.generator_epochs,
    )

    # 2-5. Judges, throughput, training and measurements.
    report = run_comparison(data, config, args.work)
    report.update({
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "data": str(data_dir),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        "versions": {name: importlib.metadata.version(name) for name in ("polyfuse", "multivae", "torch")} | {"python": platform.python_version()},
        "wall_seconds": round(time.perf_counter() - started, 1),
    })
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "results.json").write_text(json.dumps(_rounded(report), indent=2) + "\n")
    print(markdown(report))


class _SnapshotRecorder:
    """Trainer step callback that copies the weights at the end of chosen epochs and times the training up to there."""

    def __init__(self, model: MultimodalVAE, batches_per_epoch: int, epochs: Sequence[int]):
        self.model = model
        self.batches_per_epoch = batches_per_epoch
        self.epochs = set(epochs)
        self.snapshots: list[Snapshot] = []
        self.started = time.perf_counter()
        self.overhead = 0.0  # seconds spent copying, left out of the training time

    def start(self) -> None:
        self.started, self.overhead = time.perf_counter(), 0.0

    def __call__(self, state: TrainingState, values: dict[str, float]) -> None:
        finished_epochs = state.epoch + 1  # state.epoch still names the epoch in progress
        if state.batch != self.batches_per_epoch or finished_epochs not in self.epochs:
            return
        now = time.perf_counter()
        weights = {name: value.detach().clone() for name, value in self.model.state_dict().items()}
        self.snapshots.append(Snapshot(finished_epochs, now - self.started - self.overhead, weights))
        self.overhead += time.perf_counter() - now


def _stack_field(dataset: PreparedDataset, field_name: str) -> torch.Tensor:
    items = dataset.items[field_name]
    absent = [record.id for record, item in zip(dataset.records, items) if item is None]
    if absent:
        raise ValueError(f"records {', '.join(absent[:5])} have no '{field_name}'; MultiVae's complete-data models need every field in every record")
    return torch.stack(items)


def _chunks(count: int) -> list[range]:
    return [range(start, min(start + CHUNK_SIZE, count)) for start in range(0, count, CHUNK_SIZE)]


def _seed_everything(seed: int) -> None:
    # MultiVae samples from torch's global generator, and MMVAE+ picks a modality with numpy's.
    torch.manual_seed(seed)
    np.random.seed(seed)


def _load() -> tuple[float, float, float]:
    return tuple(round(value, 2) for value in os.getloadavg())  # type: ignore[return-value]  # always three values


def _format_load(load: Sequence[float]) -> str:
    return "/".join(f"{value:.1f}" for value in load)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    return value


if __name__ == "__main__":
    main()
