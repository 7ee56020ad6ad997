"""Benchmark: cross-modal retrieval on the paired digits test split, by class label.

Indexes the 2,000 test records (MNIST image, FSDD spoken digit, pendigits trajectory) with a
model trained on image+audio+sensor, then queries with every test record, each modality and
each fused set of modalities, against every target. The query's own record is left out, so
the gallery of each query is the other 1,999 records. Reports class mAP@10 and recall@K.

    python benchmarks/digits_retrieval.py --source ../shared/data --model runs/bench-digits/model \
        --work runs/bench-digits-retrieval

The model comes from ``benchmarks/digits_core.py`` (same data set, seed and pairing). Prints
a Markdown table and writes ``retrieval.json`` in the work folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

FIELDS = ("image", "audio", "sensor")
# Class mAP@10 the benchmark aims at for (query, target) pairs.
TARGETS = {("audio", "image"): 0.93, ("sensor", "image"): 0.96}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with mnist/, fsdd/ and pendigits/")
    parser.add_argument("--model", type=Path, default=Path("runs/bench-digits/model"), help="model folder from digits_core.py")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-digits-retrieval"), help="output folder")
    parser.add_argument("--data", type=Path, help="an existing digits build to reuse (default: build into --work/data)")
    parser.add_argument("--threads", type=int, default=2, help="torch and FAISS CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the digits pairing; must match the model's training data")
    args = parser.parse_args()

    if not (args.model / "config.json").is_file():
        sys.exit(
            f"no model in {args.model}; train one with: python benchmarks/digits_core.py --source {args.source} "
            f"--work {args.model.parent}"
        )
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    data = args.data or args.work / "data"
    index, metrics = args.work / "index", args.work / "metrics.json"

    # 1. The test split (the build is deterministic for a seed, so it matches the model's data).
    if not (data / "test.jsonl").is_file():
        run(["datasets", "build", "digits", "--source", str(args.source), "--out", str(data), "--seed", str(args.seed)], env)

    # 2. The index of every test record.
    started = time.perf_counter()
    run(["index", "--model", str(args.model), "--manifest", str(data / "test.jsonl"), "--out", str(index),
         "--modalities", ",".join(FIELDS), "-q"], env)
    index_seconds = time.perf_counter() - started

    # 3. Every modality set against every target, each query's own record left out.
    started = time.perf_counter()
    run(["eval-retrieval", "--index", str(index), "--manifest", str(data / "test.jsonl"), "--exclude-self",
         "--out", str(metrics), "-q"], env)
    eval_seconds = time.perf_counter() - started

    results = json.loads(metrics.read_text())
    report = {
        "command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads",
        "model": str(args.model),
        "model_fingerprint": json.loads((args.model / "config.json").read_text()).get("weights_sha256"),
        "index_seconds": round(index_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "pairs": results["pairs"],
    }
    (args.work / "retrieval.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def markdown(report: dict) -> str:
    rows = ["| query | target | mAP@10 | R@1 | R@5 | R@10 | aim |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for pair in report["pairs"]:
        query, target = "+".join(pair["query"]), pair["target"]
        aim = TARGETS.get((query, target))
        aim_text = "" if aim is None else f">= {aim} ({'met' if pair['map_at_10'] >= aim else 'missed'})"
        recall = pair["recall"]
        rows.append(f"| {query} | {target} | {pair['map_at_10']:.4f} | {recall['1']:.4f} | {recall['5']:.4f} | {recall['10']:.4f} | {aim_text} |")
    rows.append("")
    rows.append(f"Index build {report['index_seconds']} s, evaluation {report['eval_seconds']} s ({report['machine']}).")
    return "\n".join(rows)


def run(arguments: list[str], env: dict[str, str]) -> None:
    print("$ polyfuse " + " ".join(arguments), flush=True)
    subprocess.run([sys.executable, "-m", "polyfuse", *arguments], check=True, env=env)


if __name__ == "__main__":
    main()
