"""Run the creative-tool studio end to end: train or load a model, generate images from a caption, and cancel a request.

    python examples/creative_tool/demo.py --out runs/creative-tool
    python examples/creative_tool/demo.py --out runs/creative-tool --model runs/demo-digits/model --audio clip.wav

Without ``--model``, the demo builds scikit-learn's bundled digits data set with captions under
``--out``. It then trains a model on the images and captions, followed by a diffusion generator
over the model's latent space.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from polyfuse import GeneratorTrainingConfig, PolyfuseError, RunConfig, get_host, train, train_generator
from studio import Creation, SoundAndImageStudio

SUMMARY_NAME = "creative-tool.json"
RECIPE = "sklearn-digits"  # The data ships with scikit-learn, so the demo downloads nothing.
GENERATOR = "diffusion"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cancel_after >= args.steps:
        parser.error(f"--cancel-after must be below --steps ({args.steps}) so that Stop is pressed before the last step, got {args.cancel_after}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        model_dir = args.model or train_small_model(out, args)
        return run_studio(model_dir, out, args, parser)
    except PolyfuseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder for the data set, the model, the PNG files and creative-tool.json")
    parser.add_argument("--model", type=Path, help="trained model folder with a saved 'diffusion' generator (skips building the data set and training)")
    parser.add_argument("--caption", default="a handwritten seven", help="caption to generate images from")
    parser.add_argument("--audio", type=Path, help="sound file to also generate images from (requires a model with an 'audio' field)")
    parser.add_argument("--samples", type=int, default=4, help="number of images per request")
    parser.add_argument("--steps", type=int, default=25, help="number of denoising steps per request")
    parser.add_argument("--cancel-after", type=int, default=2, help="step after which the cancellation demo presses Stop (must be below --steps)")
    parser.add_argument("--epochs", type=int, default=30, help="number of training epochs for the model (ignored with --model)")
    parser.add_argument("--generator-epochs", type=int, default=150, help="number of training epochs for the diffusion generator (ignored with --model)")
    parser.add_argument("--limit", type=int, help="maximum number of records per split, balanced over digits (ignored with --model)")
    parser.add_argument("--threads", type=int, default=0, help="number of torch CPU threads (0 keeps torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the data split, training and sampling")
    return parser


def train_small_model(out: Path, args: argparse.Namespace) -> Path:
    """Build the digits data set, train a model on its images and captions, then train a diffusion generator.

    Return the model folder, which also contains the saved generator.
    """
    # 1. Write the data set files and the train and test manifests.
    print(f"Building the {RECIPE} data set in {out / 'data'}")
    built = get_host().datasets.get(RECIPE)().build(out / "data", seed=args.seed, limit=args.limit)
    train_manifest = built.manifests["train"]

    # 2. Train the multimodal VAE with the settings that the recipe suggests.
    model_dir = out / "model"
    print(f"Training the model on {built.counts['train']} records for {args.epochs} epochs")
    run_config = RunConfig.from_file(built.config).with_training(epochs=args.epochs, num_threads=args.threads, seed=args.seed)
    train(train_manifest, model_dir, run_config)

    # 3. Train the diffusion generator over the model's shared latent space.
    print(f"Training the {GENERATOR} generator for {args.generator_epochs} epochs")
    training = GeneratorTrainingConfig(epochs=args.generator_epochs, num_threads=args.threads, seed=args.seed)
    train_generator(model_dir, GENERATOR, train_manifest, training=training)
    return model_dir


def run_studio(model_dir: Path, out: Path, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Call the studio the way a host application does, save the samples and write the summary JSON."""
    # 1. Load the studio once, at start-up.
    try:
        studio = SoundAndImageStudio.load(model_dir, generator=GENERATOR, num_inference_steps=args.steps)
    except PolyfuseError:
        # Some polyfuse errors, such as ConfigError, are also ValueErrors. They are not about
        # --steps, so main() reports them.
        raise
    except ValueError as error:
        parser.error(f"--steps {args.steps} is invalid for the saved generator: {error}")
    if args.audio is not None and "audio" not in studio.fields:
        parser.error(
            f"--audio requires a model with an 'audio' field, but {model_dir} has only {', '.join(studio.fields)}; "
            "leave out --audio or pass a model trained on audio"
        )
    summary: dict = {"model": str(model_dir.resolve()), "generator": GENERATOR, "steps": args.steps}

    # 2. Generate images from the caption, with a progress line.
    creation = studio.image_from(text=args.caption, num_samples=args.samples, seed=args.seed, on_progress=ProgressLine(f"image from {args.caption!r}"))
    summary["image_from_caption"] = describe(creation, studio, out / "image-from-caption")

    # 3. Generate images from a sound, if --audio is given.
    if args.audio is not None:
        from_sound = studio.image_from(audio=args.audio.resolve(), num_samples=args.samples, seed=args.seed, on_progress=ProgressLine(f"image from {args.audio.name}"))
        summary["image_from_audio"] = describe(from_sound, studio, out / "image-from-audio")

    # 4. Caption the first image with the model, which closes the loop text -> image -> text.
    if "text" in studio.fields:
        caption = studio.caption_from(image=creation.values[0], seed=args.seed, on_progress=ProgressLine("caption of image 0"))
        summary["caption_of_first_image"] = caption.values[0]
        print(f"The model captions the first image as {caption.values[0]!r}")

    # 5. Run a request that the user stops part-way through.
    cancelled = generate_then_press_stop(studio, args.caption, args.cancel_after, args.seed)
    summary["cancelled_request"] = {
        "cancelled": cancelled.cancelled,
        "completed_steps": cancelled.completed_steps,
        "total_steps": cancelled.total_steps,
    }
    if cancelled.cancelled:
        print(f"Stop pressed: the request ended after step {cancelled.completed_steps} of {cancelled.total_steps}, and nothing was written")
    else:
        print("The request finished before Stop was pressed")

    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {out / SUMMARY_NAME}")
    return 0


def describe(creation: Creation, studio: SoundAndImageStudio, folder: Path) -> dict:
    """Save a finished creation under ``folder`` and return its summary entry (files, seed, steps, seconds)."""
    written = studio.save(creation, folder)
    files = [str(path) for path in written.files[creation.target]]
    print(f"Wrote {len(files)} {creation.target} files to {folder} in {creation.seconds:.2f} s (seed {creation.seed})")
    return {"files": files, "seed": creation.seed, "completed_steps": creation.completed_steps, "seconds": round(creation.seconds, 3)}


def generate_then_press_stop(studio: SoundAndImageStudio, caption: str, stop_after: int, seed: int) -> Creation:
    """Generate one image on a worker thread, as a UI application does, and press Stop after ``stop_after`` steps.

    Stop sets the cancel event from the calling thread, which plays the UI thread. Return the
    resulting creation, which is cancelled unless sampling finished first.
    """
    cancel = threading.Event()
    updates: queue.Queue[tuple[int, int]] = queue.Queue()
    line = ProgressLine("request the user stops")

    def report(step: int, total_steps: int) -> None:
        # Runs on the worker thread. It blocks until the UI thread has handled the update, so
        # Stop is always pressed before the next step starts and the demo is repeatable.
        updates.put((step, total_steps))
        updates.join()

    with ThreadPoolExecutor(max_workers=1) as worker:
        request = worker.submit(studio.image_from, text=caption, seed=seed, on_progress=report, cancel=cancel)
        # This loop acts as the UI thread's event loop. It draws the progress and presses Stop
        # once step ``stop_after`` is done.
        while not request.done():
            try:
                step, total_steps = updates.get(timeout=0.1)
            except queue.Empty:
                continue
            line(step, total_steps)
            if step >= stop_after:
                cancel.set()
            updates.task_done()
        creation = request.result()
    line.finish("cancelled" if creation.cancelled else "done")
    return creation


class ProgressLine:
    """Text progress bar on stdout, redrawn in place on a terminal and printed once at the end otherwise."""

    WIDTH = 20  # bar width in characters

    def __init__(self, label: str):
        self.label = label
        self.interactive = sys.stdout.isatty()
        self.last = ""  # bar text as last drawn, empty once the line is finished

    def __call__(self, step: int, total_steps: int) -> None:
        filled = round(self.WIDTH * step / max(total_steps, 1))
        self.last = f"{self.label}: [{'#' * filled}{'.' * (self.WIDTH - filled)}] {step}/{total_steps}"
        if self.interactive:
            print(f"\r{self.last}", end="", flush=True)
        if step == total_steps:
            self.finish("done")

    def finish(self, status: str) -> None:
        """End the line with ``status``, unless it is already finished or nothing was drawn."""
        if not self.last:
            return
        print(f" {status}" if self.interactive else f"{self.last} {status}")
        self.last = ""


if __name__ == "__main__":
    sys.exit(main())
