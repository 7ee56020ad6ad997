"""The evaluation suite behind ``polyfuse eval``: every measurement on one labelled test split.

Classification per subset of modalities, robustness to missing and corrupted modalities,
supervised baselines, coherence of cross-modal generation for each generator, and
cross-modal retrieval. Each part can be switched off; the results are one JSON-ready dict.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import require
from ..data.dataset import PreparedDataset, prepare_records
from ..data.manifest import read_manifest
from ..model import MultimodalVAE
from .classification import all_subsets, evaluate_classification, subset_name
from .robustness import evaluate_robustness

logger = logging.getLogger(__name__)

# Called with the name of each part as it starts, so hosts can show progress.
PartCallback = Callable[[str], None]


@dataclass(frozen=True)
class EvaluationConfig:
    """Selection of the suite's parts and their training and sampling budgets."""

    fields: tuple[str, ...] = ()  # fields to evaluate; empty means every field of the model
    classification: bool = True  # probe and k-NN accuracy per subset (needs a training manifest)
    robustness: bool = True  # fused-probe accuracy under missing and corrupted modalities (needs a training manifest)
    baselines: bool = True  # unimodal, late- and early-fusion classifiers (needs a training manifest)
    baseline_epochs: int = 10  # training epochs of each baseline
    coherence: bool = True  # coherence of generation for each generator (needs a training manifest for the judges)
    generators: tuple[str, ...] = ()  # generators to evaluate; empty means "vae" and every one saved with the model
    classifier_epochs: int = 10  # training epochs of the per-modality judge classifiers
    coherence_conditions: int = 500  # test records used as conditions per source set
    joint_samples: int = 500  # unconditional samples for joint coherence
    num_inference_steps: int = 25  # sampling steps of iterative generators such as diffusion
    retrieval: bool = True  # retrieval metrics with the test split as its own gallery
    paired: bool = False  # records are paired one to one, so instance recall is measured too
    seed: int = 0  # seeds corruptions, sampling and baselines

    def __post_init__(self) -> None:
        require(self.baseline_epochs > 0, f"baseline_epochs must be > 0, got {self.baseline_epochs}")
        require(self.classifier_epochs > 0, f"classifier_epochs must be > 0, got {self.classifier_epochs}")
        require(self.coherence_conditions > 0, f"coherence_conditions must be > 0, got {self.coherence_conditions}")
        require(self.joint_samples > 0, f"joint_samples must be > 0, got {self.joint_samples}")
        require(self.num_inference_steps > 0, f"num_inference_steps must be > 0, got {self.num_inference_steps}")


@dataclass
class EvaluationResults:
    """Everything the suite measured, as plain values, with what was skipped and why."""

    model: str
    test_manifest: str
    train_manifest: str | None
    fields: tuple[str, ...]
    records: dict[str, int]
    results: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # part -> reason
    seconds: dict[str, float] = field(default_factory=dict)  # part -> wall time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvaluationData:
    """The model and the prepared splits that every part reads."""

    model: MultimodalVAE
    model_dir: Path
    test: PreparedDataset
    train: PreparedDataset | None
    fields: tuple[str, ...]


def load_evaluation_data(
    model_dir: str | Path,
    test_manifest: str | Path,
    train_manifest: str | Path | None = None,
    fields: tuple[str, ...] = (),
    *,
    device: str = "cpu",
    progress: bool = True,
) -> EvaluationData:
    """Load the model and prepare the labelled test split (and training split, if given) once."""
    model = MultimodalVAE.from_pretrained(model_dir, device=device)
    fields = model.check_fields(fields) if fields else model.fields
    modalities = {name: model.modalities[name] for name in fields}

    def prepare(manifest: str | Path, split: str) -> PreparedDataset:
        dataset = prepare_records(
            read_manifest(manifest).records, modalities, progress=progress, description=f"Reading {split}", skip_hint=None
        )
        unlabelled = [record.id for record in dataset.records if record.label is None]
        if unlabelled:
            raise ValueError(
                f"{len(unlabelled)} record(s) of {manifest} have no label, for example '{unlabelled[0]}'; "
                "evaluation needs a 'label' on every record"
            )
        return dataset

    test = prepare(test_manifest, "test")
    train = prepare(train_manifest, "train") if train_manifest is not None else None
    return EvaluationData(model, Path(model_dir), test, train, tuple(fields))


def run_evaluation(
    data: EvaluationData,
    test_manifest: str | Path,
    work: str | Path,
    config: EvaluationConfig = EvaluationConfig(),
    *,
    train_manifest: str | Path | None = None,
    progress: bool = True,
    on_part: PartCallback | None = None,
) -> EvaluationResults:
    """Run every enabled part; ``work`` receives the retrieval index and the judge classifiers."""
    work = Path(work)
    results = EvaluationResults(
        model=str(data.model_dir),
        test_manifest=str(test_manifest),
        train_manifest=None if train_manifest is None else str(train_manifest),
        fields=data.fields,
        records={"test": len(data.test), **({"train": len(data.train)} if data.train is not None else {})},
    )
    parts: list[tuple[str, bool, bool, Callable[[], Any]]] = [
        ("classification", config.classification, True, lambda: evaluate_classification(data.model, data.train, data.test, data.fields).to_dict()),
        ("robustness", config.robustness, True, lambda: evaluate_robustness(data.model, data.train, data.test, data.fields, seed=config.seed).to_dict()),
        ("baselines", config.baselines, True, lambda: _baselines(data, config)),
        ("coherence", config.coherence, True, lambda: _coherence(data, config, work)),
        ("retrieval", config.retrieval, False, lambda: _retrieval(data, test_manifest, work, config, progress)),
    ]
    for name, enabled, needs_train, measure in parts:
        if not enabled:
            results.skipped[name] = "turned off"
            continue
        if needs_train and data.train is None:
            results.skipped[name] = "needs a training manifest (--train-manifest)"
            continue
        if on_part is not None:
            on_part(name)
        started = time.perf_counter()
        results.results[name] = measure()
        results.seconds[name] = round(time.perf_counter() - started, 2)
        logger.info("Evaluated %s in %.1f s", name, results.seconds[name])
    return results


def _baselines(data: EvaluationData, config: EvaluationConfig) -> dict[str, Any]:
    from .baselines import evaluate_baselines
    from .classifiers import ClassifierConfig

    modalities = {name: data.model.modalities[name] for name in data.fields}
    return evaluate_baselines(modalities, data.train, data.test, ClassifierConfig(epochs=config.baseline_epochs, seed=config.seed)).to_dict()


def _coherence(data: EvaluationData, config: EvaluationConfig, work: Path) -> dict[str, Any]:
    from ..generation.api import GenerationPipeline
    from ..generation.store import saved_generators
    from .classifiers import ClassifierConfig, train_classifiers
    from .coherence import conditional_coherence, joint_coherence

    modalities = {name: data.model.modalities[name] for name in data.fields}
    judges = train_classifiers(modalities, data.train, ClassifierConfig(epochs=config.classifier_epochs, seed=config.seed))
    classifiers = {name: fit.classifier for name, fit in judges.items()}
    judge_accuracy = {name: classifier.accuracy(data.test) for name, classifier in classifiers.items()}
    names = config.generators or ("vae", *saved_generators(data.model_dir))
    sources = [subset for subset in all_subsets(data.fields) if len(subset) < len(data.fields)]
    report: dict[str, Any] = {"judge_accuracy": judge_accuracy, "generators": {}}
    for name in dict.fromkeys(names):
        pipeline = GenerationPipeline(data.model, _load_generator(data, name), name)
        defaults = pipeline.generator.default_sample_options()
        options = {"num_inference_steps": config.num_inference_steps} if "num_inference_steps" in defaults else {}
        pairs = {}
        for subset in sources:
            for result in conditional_coherence(
                pipeline, classifiers, data.test, subset, max_conditions=config.coherence_conditions, seed=config.seed, **options
            ):
                pairs[f"{subset_name(result.sources)} -> {result.target}"] = result.coherence
        joint = joint_coherence(pipeline, classifiers, data.fields, config.joint_samples, seed=config.seed, **options)
        report["generators"][name] = {"pairs": pairs, "joint": joint.coherence, "joint_class_counts": joint.class_counts}
    return report


def _load_generator(data: EvaluationData, name: str):
    from ..generation.store import resolve_generator

    return resolve_generator(data.model_dir, name, data.model.latent_dim, fingerprint=data.model.fingerprint, device=data.model.device)


def _retrieval(data: EvaluationData, test_manifest: str | Path, work: Path, config: EvaluationConfig, progress: bool) -> dict[str, Any]:
    from ..retrieval.builder import build_index
    from ..retrieval.metrics import evaluate_retrieval
    from ..retrieval.search import RetrievalIndex

    folder = work / "index"
    build_index(data.model, test_manifest, folder, fields=data.fields, progress=progress, seed=config.seed)
    index = RetrievalIndex.load(folder, model=data.model)
    single = [(name,) for name in data.fields]
    report = evaluate_retrieval(
        index, test_manifest, query_fields=single, exclude_self=not config.paired, paired=config.paired, progress=progress
    )
    return report.to_dict()
