"""The main job behind ``polyfuse demo``: data set, training, generator, index, evaluation and report.

Without a data folder it uses scikit-learn's bundled handwritten digits with captions, so
it runs right after installation. Given the digits source folder (MNIST, spoken digits and
pen trajectories), it runs on the real paired data set. Each step is an ordinary polyfuse
API call, so the demo doubles as an example of the whole workflow.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import require

logger = logging.getLogger(__name__)

# Per data set: VAE epochs, generator epochs, and evaluation budgets that keep the whole demo
# within minutes on two CPU cores.
_SCHEDULES = {
    "sklearn-digits": {"epochs": 30, "generator_epochs": 150, "baseline_epochs": 10, "classifier_epochs": 10, "conditions": 300},
    "digits": {"epochs": 12, "generator_epochs": 60, "baseline_epochs": 3, "classifier_epochs": 4, "conditions": 200},
}

StepCallback = Callable[[str], None]


@dataclass(frozen=True)
class DemoConfig:
    """Settings of one demo run: its data, output folder, budgets and seed."""

    data_dir: Path | None = None  # folder with mnist/, fsdd/ and pendigits/; None uses scikit-learn's digits
    out: Path = Path("runs/demo")  # folder for the data set, model, index and report
    epochs: int | None = None  # VAE epochs; None uses the demo schedule of the data set
    generator_epochs: int | None = None  # diffusion generator epochs; None uses the demo schedule
    threads: int = 0  # torch CPU threads, 0 keeps torch's default
    seed: int = 0  # seeds the data set pairing, training, sampling and evaluation

    def __post_init__(self) -> None:
        require(self.epochs is None or self.epochs > 0, f"epochs must be > 0, got {self.epochs}")
        require(self.generator_epochs is None or self.generator_epochs > 0, f"generator_epochs must be > 0, got {self.generator_epochs}")
        require(self.threads >= 0, f"threads must be >= 0, got {self.threads}")

    @property
    def recipe(self) -> str:
        return "sklearn-digits" if self.data_dir is None else "digits"


@dataclass
class DemoOutput:
    """Paths of the demo's report and results, and the seconds each step took."""

    report: Path
    results: Path
    model: Path
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def run_demo(config: DemoConfig = DemoConfig(), *, progress: bool = True, on_step: StepCallback | None = None) -> DemoOutput:
    """Run every step of the demo and return where the report is."""
    from .evaluation.suite import EvaluationConfig, load_evaluation_data, run_evaluation
    from .generation.run import train_generator
    from .generation.training import GeneratorTrainingConfig
    from .plugins import get_host
    from .report.evaluation import build_evaluation_report
    from .training import RunConfig, train

    schedule = _SCHEDULES[config.recipe]
    out = Path(config.out)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    current = {"name": "", "since": started}

    def step(name: str) -> None:
        """Record how long the previous step took and announce the next one."""
        now = time.perf_counter()
        if current["name"]:
            timings[current["name"]] = round(now - current["since"], 1)
        current.update(name=name, since=now)
        if on_step is not None and name:
            on_step(name)

    # 1. The data set, written as real files plus manifests.
    step("data set")
    recipe = get_host().datasets.get(config.recipe)()
    built = recipe.build(out / "data", source=config.data_dir, seed=config.seed, progress=progress)
    train_manifest, test_manifest = built.manifests["train"], built.manifests["test"]

    # 2. The multimodal VAE.
    step("training")
    run_config = RunConfig.from_file(built.config).with_training(
        epochs=config.epochs or schedule["epochs"], num_threads=config.threads, seed=config.seed
    )
    train(train_manifest, out / "model", run_config, progress=progress)

    # 3. A diffusion generator over the shared latent.
    step("generator")
    generator_training = GeneratorTrainingConfig(
        epochs=config.generator_epochs or schedule["generator_epochs"], num_threads=config.threads, seed=config.seed
    )
    train_generator(out / "model", "diffusion", train_manifest, training=generator_training, progress=progress)

    # 4. Index, retrieval, generation and every measurement on the test split.
    step("evaluation")
    evaluation = EvaluationConfig(
        baseline_epochs=schedule["baseline_epochs"],
        classifier_epochs=schedule["classifier_epochs"],
        coherence_conditions=schedule["conditions"],
        joint_samples=schedule["conditions"],
        num_inference_steps=20,
        seed=config.seed,
    )
    data = load_evaluation_data(out / "model", test_manifest, train_manifest, progress=progress)
    results = run_evaluation(data, test_manifest, out / "evaluation", evaluation, train_manifest=train_manifest, progress=progress, on_part=on_step)

    # 5. The report.
    step("report")
    title = f"polyfuse demo: {config.recipe}"
    report = build_evaluation_report(data, results, title=title, seed=config.seed)
    report.add_heading("How this demo ran")
    report.add_paragraph(f"Wall time of each step before the report, in seconds: {json.dumps(timings)}.")
    html_path, json_path = report.write(out)
    step("")
    seconds = round(time.perf_counter() - started, 1)
    logger.info("Demo finished in %.1f s: %s", seconds, html_path)
    return DemoOutput(html_path, json_path, out / "model", seconds, timings)
