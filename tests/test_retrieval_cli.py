"""Tests of the index, search and eval-retrieval commands, run as the installed CLI would be."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import polyfuse_command, subprocess_env, tiny_run_config, write_tiny_dataset
from polyfuse.training import RunConfig, train

COMMANDS = (["index"], ["search"], ["eval-retrieval"])


def run_cli(*args, check=True):
    completed = subprocess.run([*polyfuse_command(), *map(str, args)], capture_output=True, text=True, env=subprocess_env(), timeout=300)
    if check:
        assert completed.returncode == 0, completed.stderr
    return completed


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A tiny model, its manifest and an index built by 'polyfuse index'."""
    folder = tmp_path_factory.mktemp("retrieval-cli")
    manifest = write_tiny_dataset(folder / "data", count=24)
    train(manifest, folder / "model", RunConfig.from_dict(tiny_run_config(epochs=2)), progress=False)
    built = run_cli(
        "index", "--model", folder / "model", "--manifest", manifest, "--out", folder / "index",
        "--index-spec", "IVF8,Flat", "--target-recall", "0.9", "-q",
    )
    return folder, manifest, built


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_documented(command):
    lines = run_cli(*command, "--help").stdout.splitlines()
    options = [index for index, line in enumerate(lines) if line.strip().startswith("-")]
    assert options
    for index in options:
        line = lines[index]
        # An option's help starts on its own line, or on the next one when the name is long.
        assert len(line.strip().split("  ")) > 1 or lines[index + 1].strip(), f"option without help: {line}"


def test_help_lists_retrieval_commands():
    output = run_cli("--help").stdout
    for command in ("index", "search", "eval-retrieval"):
        assert f"  {command} " in output


def test_index_reports_each_target(indexed):
    _, _, built = indexed
    lines = built.stdout.splitlines()
    assert lines[0].startswith("image: 24 vectors, IVF1,Flat, nprobe=1 (recall@10 ")
    assert "IVF8 needs at least 312 training vectors but only 24 are available; using IVF1" in lines[1]
    assert any(line.startswith("fused: 24 vectors") for line in lines)
    assert "Wrote index v-" in lines[-1]


def test_search_text_and_json(indexed):
    folder, manifest, _ = indexed
    image = manifest.parent / "images" / "5.png"
    text = run_cli("search", "--index", folder / "index", "--target", "image", "--image", image, "-k", "3").stdout.splitlines()
    assert len(text) == 3
    assert text[0].split()[:3] == ["1", "+1.0000", "r5"]
    assert str(image.resolve()) in text[0]
    assert "label=2" in text[0]

    sensor = manifest.parent / "sensor" / "5.npy"
    found = json.loads(
        run_cli("search", "--index", folder / "index", "--target", "fused", "--query", f"image={image}", "--sensor", sensor, "-k", "2", "--json").stdout
    )
    assert found["query"] == ["image", "sensor"]
    assert found["target"] == "fused"
    assert [hit["record_id"] for hit in found["hits"]][0] == "r5"
    assert set(found["hits"][0]) == {"record_id", "score", "path", "label", "metadata", "paths", "values"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--target", "image"], "give at least one query value"),
        (["--target", "audio", "--query", "image=x"], "Error: unknown target 'audio'; this index has: image, sensor, fused"),
        (["--target", "image", "--query", "colour=red"], "Error: query 0 has unknown field(s) 'colour'"),
        (["--target", "image", "--query", "novalue"], "expected FIELD=VALUE, got 'novalue'"),
    ],
)
def test_search_errors_are_one_line(indexed, arguments, message):
    folder, _, _ = indexed
    completed = run_cli("search", "--index", folder / "index", *arguments, check=False)
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    assert message in completed.stderr


def test_eval_retrieval_text_and_file(indexed, tmp_path):
    folder, manifest, _ = indexed
    out = tmp_path / "metrics.json"
    completed = run_cli(
        "eval-retrieval", "--index", folder / "index", "--manifest", manifest, "--exclude-self",
        "--queries", "sensor", "--queries", "image+sensor", "--targets", "image,fused", "--out", out, "-q",
    )
    lines = completed.stdout.splitlines()
    assert lines[0].split() == ["query", "->", "target", "queries", "R@1", "R@5", "R@10", "mAP@10"]
    assert [line.split()[0:3] for line in lines[1:5]] == [
        ["sensor", "->", "image"], ["sensor", "->", "fused"], ["image+sensor", "->", "image"], ["image+sensor", "->", "fused"],
    ]
    saved = json.loads(out.read_text())
    assert saved["exclude_self"] is True
    assert [pair["query"] for pair in saved["pairs"]] == [["sensor"], ["sensor"], ["image", "sensor"], ["image", "sensor"]]
    assert all(0.0 <= pair["map_at_10"] <= 1.0 for pair in saved["pairs"])


def test_eval_retrieval_rejects_conflicting_flags(indexed):
    folder, manifest, _ = indexed
    completed = run_cli("eval-retrieval", "--index", folder / "index", "--manifest", manifest, "--exclude-self", "--paired", check=False)
    assert completed.returncode == 2
    assert "--paired and --exclude-self contradict each other" in completed.stderr


def test_index_rejects_bad_budget(indexed, tmp_path):
    folder, manifest, _ = indexed
    completed = run_cli("index", "--model", folder / "model", "--manifest", manifest, "--out", tmp_path / "index", "--memory-budget", "lots", check=False)
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert "Error: invalid memory size 'lots'" in completed.stderr
