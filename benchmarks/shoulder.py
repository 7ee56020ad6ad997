"""Benchmark: shoulder exercises from smartwatch IMU data, split by subject.

    python benchmarks/shoulder.py --source ../shared/data --work runs/bench-shoulder --threads 1

Runs the shoulder analytics example (``examples/shoulder_analytics``) with its full
settings: a model on 6-axis sensor windows and exercise captions from subjects 1 to 8,
measured on subjects 9 and 10, which it never saw. It reports exercise classification from
the sensor alone, text -> sensor retrieval, and the probe's accuracy when one channel is
dead or every channel is noisy. Prints Markdown and writes ``results.json`` in the work
folder; the example's own ``summary.json`` lies next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shoulder_analytics"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder that contains shoulder_watch/shoulder_watch.npz")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-shoulder"), help="output folder")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs of the model")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    sys.path.insert(0, str(EXAMPLE))
    import shoulder_analytics

    example_args = shoulder_analytics.build_parser().parse_args([
        "--source", str(args.source), "--out", str(args.work), "--epochs", str(args.epochs),
        "--threads", str(args.threads), "--seed", str(args.seed),
    ])
    import torch

    torch.set_num_threads(args.threads)
    summary = shoulder_analytics.analyse(example_args)
    report = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        **summary,
    }
    (args.work / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown(report))


def markdown(report: dict) -> str:
    """Return the figures of ``report`` as Markdown tables."""
    classification, retrieval, faults = report["classification"], report["retrieval"], report["robustness"]
    data = report["data"]
    lines = [
        f"{data['train_windows']} training windows (subjects {', '.join(map(str, classification['train_subjects']))}), "
        f"{data['test_windows']} test windows (subjects {', '.join(map(str, classification['test_subjects']))}), "
        f"{len(data['exercises'])} exercises.",
        "",
        "| exercise from the sensor alone | accuracy |",
        "| --- | --- |",
        f"| linear probe on the sensor latent | {classification['probe_accuracy']:.4f} |",
        f"| k-nearest neighbours on the sensor latent | {classification['knn_accuracy']:.4f} |",
        f"| chance (most frequent exercise) | {classification['chance']:.4f} |",
        "",
        "| text -> sensor retrieval over the test windows | value |",
        "| --- | --- |",
        f"| mAP@10, every test caption as a query ({retrieval['captions']['queries']} queries) | {retrieval['captions']['map_at_10']:.4f} |",
        *(f"| R@{k} | {value:.4f} |" for k, value in retrieval["captions"]["recall"].items()),
        *(f"| P@10 for the query '{name.lower()}' | {scores['precision_at_10']:.4f} |" for name, scores in retrieval["per_exercise_query"].items()),
        "",
        "| sensor fault at test time | probe accuracy |",
        "| --- | --- |",
        f"| none | {faults['clean']:.4f} |",
        *(f"| channel {name} zeroed | {value:.4f} |" for name, value in faults["zeroed_channel"].items()),
        *(f"| Gaussian noise, {level} x each channel's standard deviation | {value:.4f} |" for level, value in faults["noise"].items()),
        "",
        f"Took {report['seconds']} s on {report['machine']}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
