"""Analyse smartwatch recordings of shoulder physiotherapy: exercise classification, text search and sensor faults.

    python examples/shoulder_analytics/shoulder_analytics.py --source ../shared/data --out runs/shoulder-analytics

The script builds the ``shoulder`` data set (windows of 6-axis IMU data, split by subject) and
trains a model on the sensor series and on captions that name the exercises. It then measures
which exercise the sensor shows, which recordings match a text description, and how a dead or
noisy channel affects classification, all on the unseen test subjects. Rerunning with the same
``--out`` and ``--epochs`` reuses the trained model, because training resumes from its
finished checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from measurements import SENSOR, TEXT, Split, classify_from_sensor, robustness, text_to_sensor_retrieval
from polyfuse import MultimodalVAE, PolyfuseError, RunConfig, get_host, train
from polyfuse.retrieval import RetrievalIndex, build_index

RECIPE = "shoulder"
SUMMARY_NAME = "summary.json"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        summary = analyse(args)
    except PolyfuseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print_table(summary)
    print(f"\nWrote {args.out / SUMMARY_NAME}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="data folder that contains shoulder_watch/shoulder_watch.npz")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the data set, the model, the index and summary.json")
    parser.add_argument("--epochs", type=int, default=60, help="number of training epochs for the model")
    parser.add_argument("--limit", type=int, help="maximum number of windows per split, balanced over exercises (for quick trials)")
    parser.add_argument("--query", default="abduction", help="free-text description of the recordings to search for")
    parser.add_argument("--top", type=int, default=5, help="number of recordings to list for --query")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.3, 1.0], help="noise levels, each a multiple of every channel's standard deviation in its window")
    parser.add_argument("--threads", type=int, default=0, help="number of torch CPU threads (0 keeps torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the captions, training and noise")
    return parser


def analyse(args: argparse.Namespace) -> dict[str, Any]:
    """Build the data set, train the model, run the three measurements, and write and return the summary."""
    started = time.perf_counter()

    # 1. Build the data set. The recipe puts subjects 1-8 in the train split and 9 and 10 in the test split.
    print(f"Building the {RECIPE} data set from {args.source}")
    built = get_host().datasets.get(RECIPE)().build(args.out / "data", source=args.source, seed=args.seed, limit=args.limit)
    train_split, test_split = Split.read(built.manifests["train"]), Split.read(built.manifests["test"])

    # 2. Train the model on sensor windows and captions, with the settings that the recipe suggests.
    model_dir = args.out / "model"
    print(f"Training on {len(train_split.records)} windows for {args.epochs} epochs")
    run_config = RunConfig.from_file(built.config).with_training(epochs=args.epochs, num_threads=args.threads, seed=args.seed)
    train(built.manifests["train"], model_dir, run_config, fields=[SENSOR, TEXT])
    model = MultimodalVAE.from_pretrained(model_dir)

    # 3. Classify the exercise from the sensor alone.
    print("Measuring sensor-only classification")
    probe, classification = classify_from_sensor(model, train_split, test_split)

    # 4. Find recordings that match a description: text -> sensor over the test subjects.
    print("Measuring text -> sensor retrieval")
    build_index(model_dir, test_split.manifest, args.out / "index", fields=[SENSOR, TEXT], progress=False, seed=args.seed)
    index = RetrievalIndex.load(args.out / "index", model=model)
    retrieval = text_to_sensor_retrieval(index, test_split, args.query, args.top)

    # 5. Score the same probe when a channel is dead or noisy.
    print("Measuring robustness to a zeroed channel and to noise")
    faults = robustness(model, probe, test_split, args.noise, args.seed)

    summary = {
        "data": {"train_windows": len(train_split.records), "test_windows": len(test_split.records), "exercises": test_split.exercise_names()},
        "model": {"folder": str(model_dir.resolve()), "epochs": args.epochs, "fingerprint": model.fingerprint},
        "classification": classification,
        "retrieval": retrieval,
        "robustness": faults,
        "settings": {"limit": args.limit, "seed": args.seed, "threads": args.threads, "noise": args.noise, "query": args.query},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def print_table(summary: dict[str, Any]) -> None:
    """Print the figures of the summary as aligned tables."""
    classification, retrieval, faults = summary["classification"], summary["retrieval"], summary["robustness"]
    subjects = ", ".join(map(str, classification["test_subjects"]))
    rows = [
        ("Exercise from the sensor alone", f"test subjects {subjects}"),
        ("  linear probe accuracy", f"{classification['probe_accuracy']:.4f}"),
        ("  k-NN accuracy", f"{classification['knn_accuracy']:.4f}"),
        ("  chance (most frequent exercise)", f"{classification['chance']:.4f}"),
        *((f"  {name}", f"{value:.4f}") for name, value in classification["per_exercise"].items()),
        *((f"  subject {subject}", f"{value:.4f}") for subject, value in classification["per_subject"].items()),
        ("Text -> sensor, every test caption", f"{retrieval['captions']['queries']} queries"),
        ("  mAP@10", f"{retrieval['captions']['map_at_10']:.4f}"),
        *((f"  R@{k}", f"{value:.4f}") for k, value in retrieval["captions"]["recall"].items()),
        ("Text -> sensor, exercise name as query", "P@10 / AP@10"),
        *((f"  {name.lower()}", f"{scores['precision_at_10']:.4f} / {scores['ap_at_10']:.4f}") for name, scores in retrieval["per_exercise_query"].items()),
        ("Robustness (probe accuracy)", ""),
        ("  clean", f"{faults['clean']:.4f}"),
        *((f"  channel {name} zeroed", f"{value:.4f}") for name, value in faults["zeroed_channel"].items()),
        *((f"  noise {level} x channel std", f"{value:.4f}") for level, value in faults["noise"].items()),
    ]
    width = max(len(label) for label, _ in rows)
    print()
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    query = retrieval["query"]
    print(f"\nRecordings that look like {query['text']!r}:")
    for rank, hit in enumerate(query["hits"], start=1):
        print(f"{rank:>3}  {hit['score']:+.4f}  {hit['id']}  {hit['exercise']}, subject {hit['subject']}, from {hit['start_seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
