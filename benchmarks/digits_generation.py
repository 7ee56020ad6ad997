"""Benchmark: cross-modal generation on the paired digits set with the VAE prior, a GAN and a diffusion model.

    python benchmarks/digits_generation.py --source ../shared/data --work runs/bench-generation

1. Builds the digits set (MNIST images, FSDD spoken digits, pendigits pen trajectories,
   captions) and trains two models through the CLI: one on image+audio+sensor, one on all
   four fields. Captions name the digit, so the image/audio/sensor figures come from the
   model that never saw text. The run config is the one the build writes with the changes
   in ``GENERATION_CHANGES``, saved as ``generation-train.json`` in the work folder.
2. Fits a gan and a diffusion generator for each model through the CLI. With
   ``--parallel`` the two models' chains of training commands run side by side.
3. Trains one classifier per modality (its encoder backbone plus a linear head) on the
   real training split, with the modality configs of the build's run config (so the
   judges do not depend on ``GENERATION_CHANGES``), and reports their accuracy on the real
   test split.
4. On the test split: coherence of every single-source pair and of the two-source
   subsets, unconditional joint coherence of image+audio+sensor, the Fréchet distance
   between generated and real latents, and diversity within a condition.
5. Writes a gallery (PNG grids per target modality, WAV files) from the
   image+audio+sensor model's diffusion generator.

Every training step resumes from its checkpoint when the script runs again. Prints
Markdown and writes ``results.json`` in the work folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SENSES = ("image", "audio", "sensor")
ALL_FIELDS = (*SENSES, "text")
GENERATORS = ("vae", "gan", "diffusion")
GALLERY_GENERATOR = "diffusion"
# (sources, targets) measured on the model without text: every single source, then every pair of sources.
SENSE_PAIRS = [((field,), tuple(other for other in SENSES if other != field)) for field in SENSES] + [
    (pair, tuple(other for other in SENSES if other not in pair)) for pair in itertools.combinations(SENSES, 2)
]
# (sources, targets) measured on the model trained with text: text to each sense, each sense to text, all senses to text.
TEXT_PAIRS = [(("text",), SENSES), *(((field,), ("text",)) for field in SENSES), (SENSES, ("text",))]
# Diffusion sampling settings compared on the model without text, on a random subset of test records;
# the first is the generator's default.
SETTINGS_CONDITIONS = 500
DIFFUSION_SETTINGS = [
    {},
    {"guidance_scale": 1.0},
    {"guidance_scale": 4.0},
    {"sampler": "dpm", "num_inference_steps": 20},
    {"num_inference_steps": 10},
]
DIGITS = tuple(range(10))
# Changes to the digits recipe's run config, which suits probes and retrieval, so that the decoders
# keep more of each modality's detail. docs/benchmarks.md measures each change.
GENERATION_CHANGES = {
    "training": {"alignment_weight": 50.0, "epochs": 150},
    "modalities": {"audio": {"likelihood_weight": 0.5, "augment_noise_probability": 0.0}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with mnist/, fsdd/ and pendigits/")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-generation"), help="output folder")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data pairing, training and sampling")
    parser.add_argument("--limit", type=int, help="records per split, for a quick run")
    parser.add_argument("--vae-epochs", type=int, help="override the epochs of the image+audio+sensor model (the generation run config sets 150)")
    parser.add_argument("--captioned-epochs", type=int, default=50,
                        help="epochs of the model with text, whose caption decoder makes each epoch about four times slower")
    parser.add_argument("--generator-epochs", type=int, default=300, help="epochs of gan and diffusion training")
    parser.add_argument("--classifier-epochs", type=int, default=40, help="epochs of each modality classifier")
    parser.add_argument("--joint-samples", type=int, default=1000, help="unconditional samples for joint coherence")
    parser.add_argument("--skip-text", action="store_true", help="skip the model trained with captions")
    parser.add_argument("--parallel", action="store_true",
                        help="train the two models and their generators in two processes at once, each with --threads threads")
    args = parser.parse_args()

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), POLYFUSE_PROGRESS="0")
    timings: dict[str, float] = {}
    models = {"+".join(SENSES): SENSES} if args.skip_text else {"+".join(SENSES): SENSES, "+".join(ALL_FIELDS): ALL_FIELDS}

    # 1. Data set and models.
    build = ["datasets", "build", "digits", "--source", str(args.source), "--out", str(work / "data"), "--seed", str(args.seed), "-q"]
    if args.limit:
        build += ["--limit", str(args.limit)]
    timed(timings, "build", lambda: run(build, env))
    run_config = generation_run_config(work)
    steps = {name: model_steps(args, work, run_config, fields) for name, fields in models.items()}
    if args.parallel:
        # 1-2. Each model's chain of training commands runs in its own worker. The chains write to different folders.
        with ThreadPoolExecutor(max_workers=len(steps)) as pool:
            for future in [pool.submit(run_steps, chain, env, timings) for chain in steps.values()]:
                future.result()
    else:
        for chain in steps.values():
            run_steps(chain, env, timings)

    # 3-5. Classifiers, measurements and gallery, in this process.
    report = evaluate(args, work, models, timings)
    report.update({
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        "run_config": json.loads(run_config.read_text()),
        "captioned_epochs": args.captioned_epochs,
        "seconds": {key: round(value, 1) for key, value in timings.items()},
    })
    (work / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def model_steps(args: argparse.Namespace, work: Path, run_config: Path, fields: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """Return the named CLI commands that train one model, then its gan and diffusion generators."""
    name = "+".join(fields)
    train = ["train", "--manifest", str(work / "data" / "train.jsonl"), "--config", str(run_config),
             "--out", str(model_dir(work, fields)), "--modalities", ",".join(fields), "--threads", str(args.threads),
             "--seed", str(args.seed), "-q"]
    epochs = args.captioned_epochs if "text" in fields else args.vae_epochs
    if epochs:
        train += ["--epochs", str(epochs)]
    steps = [(f"train {name}", train)]
    for kind in ("gan", "diffusion"):
        steps.append((f"train-generator {kind} {name}", [
            "train-generator", "--model", str(model_dir(work, fields)), "--generator", kind,
            "--manifest", str(work / "data" / "train.jsonl"), "--epochs", str(args.generator_epochs),
            "--threads", str(args.threads), "--seed", str(args.seed), "-q"]))
    return steps


def run_steps(steps: list[tuple[str, list[str]]], env: dict[str, str], timings: dict[str, float]) -> None:
    for name, arguments in steps:
        timed(timings, name, lambda: run(arguments, env))


def generation_run_config(work: Path) -> Path:
    """Write the build's run config with ``GENERATION_CHANGES`` applied, and return its path."""
    config = json.loads((work / "data" / "polyfuse-train.json").read_text())
    for section, changes in GENERATION_CHANGES.items():
        if section == "modalities":
            for field, options in changes.items():
                config["modalities"][field].update(options)
        else:
            config[section].update(changes)
    path = work / "generation-train.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def evaluate(args: argparse.Namespace, work: Path, models: dict[str, tuple[str, ...]], timings: dict[str, float]) -> dict:
    import torch

    from polyfuse.data.dataset import PreparedDataset, prepare_records
    from polyfuse.data.manifest import read_manifest
    from polyfuse.generation import GenerationPipeline
    from polyfuse.training.config import RunConfig

    torch.set_num_threads(args.threads)
    largest = max(models.values(), key=len)
    modalities = GenerationPipeline.from_pretrained(model_dir(work, largest)).model.modalities
    train_set = prepare_records(read_manifest(work / "data" / "train.jsonl").records, modalities, progress=False)
    test_set = prepare_records(read_manifest(work / "data" / "test.jsonl").records, modalities, progress=False)

    judged = RunConfig.from_file(work / "data" / "polyfuse-train.json").select_fields(largest).build_modalities()
    classifiers, accuracy = timed(timings, "classifiers", lambda: load_or_train_classifiers(work, judged, train_set, test_set, args))
    results: dict = {"classifier_test_accuracy": accuracy, "models": {}}
    for name, fields in models.items():
        view = PreparedDataset(test_set.records, {field: test_set.items[field] for field in fields})
        per_generator = {}
        for kind in GENERATORS:
            pipeline = GenerationPipeline.from_pretrained(model_dir(work, fields), generator=kind)
            per_generator[kind] = timed(timings, f"evaluate {kind} {name}", lambda: measure(pipeline, classifiers, view, fields, args))
        results["models"][name] = per_generator
        if fields == SENSES:
            pipeline = GenerationPipeline.from_pretrained(model_dir(work, fields), generator="diffusion")
            results["diffusion_settings"] = timed(timings, "diffusion settings", lambda: compare_settings(pipeline, classifiers, view, args))
        pipeline = GenerationPipeline.from_pretrained(model_dir(work, fields), generator=GALLERY_GENERATOR)
        if fields == SENSES:
            timed(timings, "gallery", lambda: write_gallery(pipeline, classifiers, view, work / "gallery", args.seed))
        else:
            timed(timings, "gallery", lambda: write_caption_gallery(pipeline, view, work / "gallery", args.seed))
    return results


def load_or_train_classifiers(work, modalities, train_set, test_set, args):
    from polyfuse.errors import CheckpointError
    from polyfuse.evaluation.classifiers import ClassifierConfig, ModalityClassifier, train_classifier

    folder = work / "classifiers"
    classifiers, accuracy = {}, {}
    for field, modality in modalities.items():
        path = folder / f"{field}.safetensors"
        try:
            classifiers[field] = ModalityClassifier.load(path, modality) if path.is_file() else None
        except CheckpointError:
            classifiers[field] = None
        if classifiers[field] is None:
            config = ClassifierConfig(epochs=args.classifier_epochs, seed=args.seed)
            classifiers[field] = train_classifier(modality, train_set, config).classifier
            classifiers[field].save(path)
        accuracy[field] = round(classifiers[field].accuracy(test_set), 4)
        print(f"classifier {field}: test accuracy {accuracy[field]}", flush=True)
    return classifiers, accuracy


def measure(pipeline, classifiers, dataset, fields, args) -> dict:
    """Coherence of every single-source pair and two-source subset, joint coherence, latent quality and sampling time."""
    import torch

    from polyfuse.evaluation.coherence import conditional_coherence, joint_coherence
    from polyfuse.evaluation.latent_quality import measure_latent_quality

    coherence: dict[str, float] = {}
    for sources, targets in (TEXT_PAIRS if "text" in fields else SENSE_PAIRS):
        for result in conditional_coherence(pipeline, classifiers, dataset, sources, targets, seed=args.seed):
            coherence[f"{'+'.join(result.sources)}->{result.target}"] = round(result.coherence, 4)
    print(f"{pipeline.name}: {coherence}", flush=True)

    measured = {"coherence": coherence}
    measured["sampling_seconds_per_1000"] = round(sampling_seconds(pipeline, torch.Generator().manual_seed(args.seed)), 3)
    if "text" not in fields:
        joint = joint_coherence(pipeline, classifiers, list(SENSES), num_samples=args.joint_samples, seed=args.seed)
        measured["joint_coherence"] = round(joint.coherence, 4)
        measured["joint_class_counts"] = joint.class_counts
        quality = measure_latent_quality(pipeline, dataset, "image", seed=args.seed)
        measured["latent_quality"] = {
            "frechet_distance": round(quality.frechet_distance, 3),
            "unconditional_diversity": round(quality.unconditional_diversity, 3),
            "real_diversity": round(quality.real_diversity, 3),
            "within_condition_diversity": round(quality.within_condition_diversity, 3),
        }
    return measured


def compare_settings(pipeline, classifiers, dataset, args) -> list[dict]:
    """Measure mean single-source coherence of the diffusion generator under other guidance scales, samplers and step counts."""
    import torch

    from polyfuse.evaluation.coherence import conditional_coherence

    rows = []
    for options in DIFFUSION_SETTINGS:
        started = time.perf_counter()
        values = []
        for sources, targets in SENSE_PAIRS[: len(SENSES)]:
            results = conditional_coherence(
                pipeline, classifiers, dataset, sources, targets, max_conditions=SETTINGS_CONDITIONS, seed=args.seed, **options
            )
            values += [result.coherence for result in results]
        resolved = pipeline.generator.resolve_sample_options(**options)
        seconds = time.perf_counter() - started
        sampling = sampling_seconds(pipeline, torch.Generator().manual_seed(args.seed), **options)
        rows.append({**resolved, "mean_single_source_coherence": round(sum(values) / len(values), 4), "min": round(min(values), 4),
                     "evaluation_seconds": round(seconds, 1), "sampling_seconds_per_1000": round(sampling, 3)})
        print(rows[-1], flush=True)
    return rows


def sampling_seconds(pipeline, random, **options) -> float:
    """Wall time of sampling 1,000 conditional latents, without decoding."""
    from polyfuse.generator import Condition
    from polyfuse.posterior import DiagonalGaussian
    import torch

    dim = pipeline.model.latent_dim
    condition = Condition(DiagonalGaussian(torch.zeros(1000, dim), torch.zeros(1000, dim)), ("image",))
    started = time.perf_counter()
    pipeline.sample_latents(condition, num_samples=1000, generator=random, **options)
    return time.perf_counter() - started


# -- gallery -------------------------------------------------------------------


def write_gallery(pipeline, classifiers, dataset, folder: Path, seed: int) -> None:
    """PNG grids of images, pen trajectories and spectrograms generated across modalities, a joint grid, and WAVs."""
    import numpy as np
    import torch

    from polyfuse.generation.conditions import condition_from_batch

    folder.mkdir(parents=True, exist_ok=True)
    model = pipeline.model
    firsts = [dataset.labels.index(digit) for digit in DIGITS]
    batch = dataset.batch(firsts, {name: model.modalities[name] for name in dataset.items})
    columns = 8
    random = torch.Generator().manual_seed(seed)

    def generate(source: str, target: str):
        condition = condition_from_batch(model, batch, [source]).repeat(columns)
        output = pipeline(condition, targets=[target], num_samples=condition.num_rows, generator=random)
        return output.outputs[target]

    images = generate("audio", "image").data[:, 0].cpu().numpy()  # (10 * columns, H, W)
    draw_grid(folder / "image_from_audio.png", images.reshape(10, columns, *images.shape[1:]), "image", "Images generated from one spoken digit per row")

    series = generate("image", "sensor").data.cpu().numpy()  # (10 * columns, C + 1, T)
    draw_grid(folder / "sensor_from_image.png", series.reshape(10, columns, *series.shape[1:]), "trajectory", "Pen trajectories generated from one image per row")

    waveforms = generate("image", "audio")
    spectrograms = model.decoders["audio"].front_end(waveforms.data)[:, 0].cpu().numpy()  # (10 * columns, n_mels, frames)
    draw_grid(folder / "audio_from_image.png", spectrograms.reshape(10, columns, *spectrograms.shape[1:]), "spectrogram", "Log-mel spectrograms of audio generated from one image per row")
    audio = model.modalities["audio"]
    (folder / "audio").mkdir(exist_ok=True)
    for digit in DIGITS:
        clip = audio.postprocess(waveforms.data[digit * columns])
        audio.save(clip, folder / "audio" / f"digit-{digit}-from-image.wav")

    # Unconditional joint samples: one column per sample, with each modality's predicted class.
    joint = pipeline(None, targets=list(SENSES), num_samples=12, generator=random)
    predicted = {name: classifiers[name].predict(joint.outputs[name]) for name in SENSES}
    rows = [
        joint.outputs["image"].data[:, 0].cpu().numpy(),
        joint.outputs["sensor"].data.cpu().numpy(),
        model.decoders["audio"].front_end(joint.outputs["audio"].data)[:, 0].cpu().numpy(),
    ]
    draw_joint(folder / "joint_unconditional.png", rows, predicted)
    for index in range(4):
        audio.save(audio.postprocess(joint.outputs["audio"].data[index]), folder / "audio" / f"joint-{index}.wav")
    np.save(folder / "joint_latents.npy", joint.latents.cpu().numpy())


def write_caption_gallery(pipeline, dataset, folder: Path, seed: int) -> None:
    """Write a text file and a PNG table of captions generated from one image, sound and trajectory per digit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from polyfuse.generation.conditions import condition_from_batch

    model = pipeline.model
    firsts = [dataset.labels.index(digit) for digit in DIGITS]
    batch = dataset.batch(firsts, {name: model.modalities[name] for name in dataset.items})
    random = torch.Generator().manual_seed(seed)
    cells = []
    for digit in DIGITS:
        cells.append([str(digit)])
    for source in SENSES:
        condition = condition_from_batch(model, batch, [source])
        output = pipeline(condition, targets=["text"], num_samples=10, generator=random)
        for digit, caption in enumerate(output.values(model, "text")):
            # Untrained decoders emit arbitrary bytes, so non-printable characters are shown as U+FFFD.
            cells[digit].append("".join(character if character.isprintable() else "\ufffd" for character in caption))
    (folder / "text_from_senses.txt").write_text("\n".join("\t".join(row) for row in cells) + "\n", encoding="utf-8")
    plt.rcParams["text.parse_math"] = False  # captions may contain '$', which would start mathtext
    figure, axes = plt.subplots(figsize=(11, 4))
    axes.axis("off")
    table = axes.table(cellText=cells, colLabels=["digit", "from image", "from audio", "from sensor"], loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    axes.set_title("Captions generated by the diffusion generator (model trained with text)")
    figure.savefig(folder / "text_from_senses.png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def draw_grid(path: Path, cells, kind: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = cells.shape[:2]
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.1))
    for row in range(rows):
        for column in range(columns):
            draw_cell(axes[row, column], cells[row, column], kind)
        axes[row, 0].set_ylabel(str(row), rotation=0, labelpad=12, fontsize=10)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def draw_joint(path: Path, rows, predicted) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ("image", "trajectory", "spectrogram")
    columns = rows[0].shape[0]
    figure, axes = plt.subplots(3, columns, figsize=(columns * 1.1, 3.6))
    for column in range(columns):
        for row, kind in enumerate(kinds):
            draw_cell(axes[row, column], rows[row][column], kind)
        classes = "/".join(str(predicted[name][column]) for name in SENSES)
        axes[0, column].set_title(classes, fontsize=8)
    figure.suptitle("Unconditional joint samples (classes: image/audio/sensor)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def draw_cell(axes, value, kind: str) -> None:
    import numpy as np

    axes.set_xticks([])
    axes.set_yticks([])
    if kind == "image":
        axes.imshow(value, cmap="gray", vmin=0, vmax=1)
    elif kind == "spectrogram":
        axes.imshow(value, origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1)
    else:
        # Channels are x, y and pen_up; strokes are drawn where the pen is down, and y points up.
        x, y, pen_up = value[0], value[1], value[2] > 0.5
        segments = np.split(np.arange(len(x)), np.flatnonzero(np.diff(pen_up.astype(int))) + 1)
        for segment in segments:
            if not pen_up[segment[0]]:
                axes.plot(x[segment], y[segment], color="black", linewidth=1.2)
        axes.set_aspect("equal", adjustable="datalim")


# -- helpers -------------------------------------------------------------------


def model_dir(work: Path, fields) -> Path:
    return work / ("model-" + "-".join(fields))


def markdown(report: dict) -> str:
    lines = ["Classifier accuracy on the real test split: "
             + ", ".join(f"{field} {value:.4f}" for field, value in report["classifier_test_accuracy"].items()), ""]
    for name, generators in report["models"].items():
        pairs = list(next(iter(generators.values()))["coherence"])
        lines += [f"Model trained on {name}:", "", "| sources -> target | " + " | ".join(GENERATORS) + " |",
                  "| --- | " + " | ".join("---" for _ in GENERATORS) + " |"]
        for pair in pairs:
            lines.append(f"| {pair} | " + " | ".join(f"{generators[kind]['coherence'][pair]:.3f}" for kind in GENERATORS) + " |")
        single = [pair for pair in pairs if "+" not in pair.split("->")[0] and "text" not in pair]
        if single:
            means = [sum(generators[kind]["coherence"][pair] for pair in single) / len(single) for kind in GENERATORS]
            lines.append("| mean of single-source pairs | " + " | ".join(f"{value:.3f}" for value in means) + " |")
        if "joint_coherence" in generators["vae"]:
            lines.append("| joint (unconditional) | " + " | ".join(f"{generators[kind]['joint_coherence']:.3f}" for kind in GENERATORS) + " |")
            lines.append("| Fréchet distance | " + " | ".join(f"{generators[kind]['latent_quality']['frechet_distance']:.2f}" for kind in GENERATORS) + " |")
        lines.append("| s per 1,000 latents | " + " | ".join(f"{generators[kind]['sampling_seconds_per_1000']}" for kind in GENERATORS) + " |")
        lines.append("")
    if "diffusion_settings" in report:
        lines += [f"Diffusion settings (image+audio+sensor model, six single-source pairs, {SETTINGS_CONDITIONS} test records each):", "",
                  "| sampler | steps | guidance | mean coherence | min | s per 1,000 latents |", "| --- | --- | --- | --- | --- | --- |"]
        for row in report["diffusion_settings"]:
            lines.append(f"| {row['sampler']} | {row['num_inference_steps']} | {row['guidance_scale']} | "
                         f"{row['mean_single_source_coherence']:.3f} | {row['min']:.3f} | {row['sampling_seconds_per_1000']} |")
        lines.append("")
    lines.append("Seconds per phase: " + ", ".join(f"{key} {value}" for key, value in report["seconds"].items()))
    lines.append(f"Machine: {report['machine']}.")
    return "\n".join(lines)


def timed(timings: dict[str, float], name: str, action):
    started = time.perf_counter()
    result = action()
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
    return result


def run(arguments: list[str], env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "polyfuse", *arguments]
    print("$ polyfuse " + " ".join(arguments), flush=True)
    subprocess.run(command, check=True, env=env)


if __name__ == "__main__":
    main()
