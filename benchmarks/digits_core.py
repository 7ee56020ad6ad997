"""Benchmark: digit classification from the shared latent on the paired digits data set.

Builds the digits set (MNIST images, FSDD spoken digits, pendigits pen trajectories) with
the standard pairing, trains through the CLI on image+audio+sensor, encodes the test split
from every subset of those modalities and fits a logistic-regression probe on the training
latents of the same subset.

    python benchmarks/digits_core.py --source ../shared/data --work runs/bench-digits

Prints a Markdown table and writes ``results.json`` in the work folder.
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
from pathlib import Path

FIELDS = ("image", "audio", "sensor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with mnist/, fsdd/ and pendigits/")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-digits"), help="output folder")
    parser.add_argument("--epochs", type=int, help="override the recipe config's epochs")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--limit", type=int, help="records per split, for a quick run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data, model = args.work / "data", args.work / "model"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))

    # 1. Data set.
    build = ["datasets", "build", "digits", "--source", str(args.source), "--out", str(data), "--seed", str(args.seed)]
    if args.limit:
        build += ["--limit", str(args.limit)]
    run(build, env)

    # 2. Training on image, audio and sensor (captions are left out: they name the digit).
    train = ["train", "--manifest", str(data / "train.jsonl"), "--config", str(data / "polyfuse-train.json"),
             "--out", str(model), "--modalities", ",".join(FIELDS), "--threads", str(args.threads), "--seed", str(args.seed)]
    if args.epochs:
        train += ["--epochs", str(args.epochs)]
    started = time.perf_counter()
    run(train, env)
    train_seconds = time.perf_counter() - started

    # 3. Probes for every subset.
    results = probe_subsets(model, data, args.threads)
    summary = json.loads((model / "config.json").read_text())["training_summary"]
    report = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        # The command's wall time includes reading the records, and is short when the run was already finished.
        "train_command_seconds": round(train_seconds, 1),
        "train_seconds": summary["seconds"],
        "samples_per_second": summary["samples_per_second"],
        "probe_accuracy": results,
    }
    (args.work / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def probe_subsets(model_dir: Path, data: Path, threads: int) -> dict[str, float]:
    import torch

    from polyfuse import MultimodalVAE, read_manifest
    from polyfuse.data import prepare_records
    from polyfuse.encoding import encode_prepared
    from polyfuse.evaluation import fit_linear_probe

    torch.set_num_threads(threads)
    model = MultimodalVAE.from_pretrained(model_dir)
    modalities = {field: model.modalities[field] for field in FIELDS}
    splits = {split: prepare_records(read_manifest(data / f"{split}.jsonl").records, modalities) for split in ("train", "test")}
    results = {}
    for size in range(len(FIELDS), 0, -1):
        for subset in itertools.combinations(FIELDS, size):
            train = encode_prepared(model, splits["train"], subset)
            test = encode_prepared(model, splits["test"], subset)
            probe = fit_linear_probe(train.mean, train.labels, test.mean, test.labels)
            results["+".join(subset)] = round(probe.accuracy, 4)
    return results


def markdown(report: dict) -> str:
    rows = ["| modalities | probe accuracy |", "| --- | --- |"]
    rows += [f"| {name} | {100 * accuracy:.2f}% |" for name, accuracy in report["probe_accuracy"].items()]
    rows.append("")
    rows.append(
        f"Training: {report['train_seconds']} s over the whole run, {report['samples_per_second']} records/s; "
        f"this call of the train command took {report['train_command_seconds']} s ({report['machine']})."
    )
    return "\n".join(rows)


def run(arguments: list[str], env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "polyfuse", *arguments]
    print("$ polyfuse " + " ".join(arguments), flush=True)
    subprocess.run(command, check=True, env=env)


if __name__ == "__main__":
    main()
