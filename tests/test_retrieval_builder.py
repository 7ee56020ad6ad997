"""Tests of building a retrieval index: layout, settings, resuming, and a build killed half-way."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import faiss
import pytest

from conftest import subprocess_env, tiny_run_config, write_tiny_dataset
from polyfuse.errors import CheckpointError
from polyfuse.model import MultimodalVAE
from polyfuse.retrieval import IndexLockedError, RetrievalIndex, build_index
from polyfuse.retrieval.builder import STATE_NAME
from polyfuse.retrieval.store import POINTER_NAME, STAGING_NAME, read_pointer, writer_lock
from polyfuse.training import RunConfig, train


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    faiss.omp_set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on 36 labelled image+sensor records, and their manifest."""
    folder = tmp_path_factory.mktemp("retrieval-model")
    manifest = write_tiny_dataset(folder / "data", count=36)
    train(manifest, folder / "model", RunConfig.from_dict(tiny_run_config(epochs=3)), progress=False)
    return folder / "model", manifest


def query_image(manifest: Path, number: int) -> dict:
    return {"image": str(manifest.parent / "images" / f"{number}.png")}


def test_build_layout_and_settings(trained, tmp_path):
    model_dir, manifest = trained
    output = build_index(model_dir, manifest, tmp_path / "index", progress=False)

    assert output.counts == {"image": 36, "sensor": 36, "fused": 36}
    assert {target: spec.factory for target, spec in output.specs.items()} == {"image": "Flat", "sensor": "Flat", "fused": "Flat"}
    assert output.tuning == {"image": None, "sensor": None, "fused": None}
    assert output.resumed_chunks == 0
    names = sorted(path.name for path in (tmp_path / "index").iterdir())
    assert names == [".lock", POINTER_NAME, output.version.name]
    assert read_pointer(tmp_path / "index") == output.version
    assert sorted(path.name for path in output.version.iterdir()) == [
        "fused.faiss", "fused.json", "image.faiss", "image.json", "records.jsonl", "sensor.faiss", "sensor.json", "settings.json",
    ]

    settings = json.loads((output.version / "settings.json").read_text())
    model = MultimodalVAE.from_pretrained(model_dir)
    assert settings["model_fingerprint"] == model.fingerprint
    assert settings["model_folder"] == str(model_dir.resolve())
    assert settings["fields"] == ["image", "sensor"]
    assert settings["targets"] == ["image", "sensor", "fused"]
    assert settings["metric"] == "cosine"
    assert settings["next_key"] == 36
    assert settings["index_specs"]["image"]["factory"] == "Flat"

    entries = [json.loads(line) for line in (output.version / "records.jsonl").read_text().splitlines()]
    assert [entry["id"] for entry in entries] == [f"r{number}" for number in range(36)]
    first = entries[0]
    assert first["paths"]["image"] == str((manifest.parent / "images" / "0.png").resolve())
    assert first["label"] == 0
    assert first["targets"] == ["image", "sensor", "fused"]


def test_build_records_ivf_fallback(trained, tmp_path, caplog):
    model_dir, manifest = trained
    with caplog.at_level(logging.WARNING, logger="polyfuse.retrieval.spec"):
        output = build_index(model_dir, manifest, tmp_path / "index", index_spec="IVF64,Flat", progress=False)
    assert output.specs["image"].factory == "IVF1,Flat"
    assert "IVF64 needs at least 2,496 training vectors but only 36 are available; using IVF1" in caplog.text
    settings = json.loads((output.version / "settings.json").read_text())
    assert settings["index_specs"]["image"]["adjustments"] == [
        "IVF64 needs at least 2,496 training vectors but only 36 are available; using IVF1"
    ]
    assert settings["tuning"]["image"]["parameter"] == "nprobe"
    assert settings["tuning"]["image"]["query_source"] == "sensor"
    assert settings["tuning"]["fused"]["query_source"] == "image, sensor"
    assert json.loads((output.version / "image.json").read_text())["search_parameters"] == {"nprobe": 1}


def test_interrupted_build_resumes(trained, tmp_path):
    model_dir, manifest = trained
    out = tmp_path / "index"
    reference = build_index(model_dir, manifest, tmp_path / "reference", chunk_size=8, progress=False)

    def stop_after_two(progress):
        if progress.chunks_done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(model_dir, manifest, out, chunk_size=8, progress=False, on_chunk=stop_after_two)
    assert not (out / POINTER_NAME).exists()
    assert sorted(path.name for path in (out / STAGING_NAME / "chunks").iterdir()) == ["chunk-000000.npz", "chunk-000001.npz"]

    resumed = build_index(model_dir, manifest, out, chunk_size=8, progress=False)
    assert resumed.resumed_chunks == 2
    assert not (out / STAGING_NAME).exists()
    expected = RetrievalIndex.load(tmp_path / "reference").search([query_image(manifest, 4)], "sensor", k=5)
    found = RetrievalIndex.load(out).search([query_image(manifest, 4)], "sensor", k=5)
    assert [hit.record_id for hit in found[0].hits] == [hit.record_id for hit in expected[0].hits]
    assert reference.counts == resumed.counts


def test_changed_inputs_discard_chunks(trained, tmp_path):
    model_dir, manifest = trained
    out = tmp_path / "index"
    with pytest.raises(KeyboardInterrupt):
        build_index(model_dir, manifest, out, chunk_size=8, progress=False, on_chunk=_interrupt)
    # Other fields make the encoded chunks useless.
    output = build_index(model_dir, manifest, out, fields=["image"], chunk_size=8, progress=False)
    assert output.resumed_chunks == 0
    assert output.counts == {"image": 36, "fused": 36}


SIGKILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from polyfuse.retrieval import build_index

    def kill_after_two(progress):
        if progress.chunks_done == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    build_index(sys.argv[1], sys.argv[2], sys.argv[3], chunk_size=8, progress=False, on_chunk=kill_after_two)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX only")
def test_sigkill_keeps_previous_index(trained, tmp_path):
    model_dir, manifest = trained
    out = tmp_path / "index"
    # The previous index covers the first 12 records only; the manifest sits beside the
    # original so that its relative paths resolve.
    first_twelve = manifest.parent / "first-twelve.jsonl"
    first_twelve.write_text("".join(manifest.read_text().splitlines(keepends=True)[:12]))
    previous = build_index(model_dir, first_twelve, out, progress=False)
    queries = [query_image(manifest, number) for number in (1, 5)]
    before = RetrievalIndex.load(out).search(queries, "image", k=4)

    killed = subprocess.run(
        [sys.executable, "-c", SIGKILL_SCRIPT, str(model_dir), str(manifest), str(out)], env=subprocess_env(), timeout=300
    )
    assert killed.returncode == -signal.SIGKILL
    assert read_pointer(out) == previous.version
    assert (out / STAGING_NAME / STATE_NAME).is_file()
    after = RetrievalIndex.load(out).search(queries, "image", k=4)
    for old, new in zip(before, after):
        assert [(hit.record_id, hit.score) for hit in new.hits] == [(hit.record_id, hit.score) for hit in old.hits]
    assert len(RetrievalIndex.load(out)) == 12

    rerun = build_index(model_dir, manifest, out, chunk_size=8, progress=False)
    assert rerun.resumed_chunks == 2
    assert rerun.counts["image"] == 36
    assert not previous.version.exists()
    assert sorted(path.name for path in out.iterdir()) == [".lock", POINTER_NAME, rerun.version.name]


def test_build_rejects_concurrent_writer(trained, tmp_path):
    model_dir, manifest = trained
    with writer_lock(tmp_path / "index"):
        with pytest.raises(IndexLockedError, match="another process is writing the index"):
            build_index(model_dir, manifest, tmp_path / "index", progress=False)


def test_skip_invalid_leaves_record_out(trained, tmp_path):
    model_dir, manifest = trained
    data = tmp_path / "data"
    broken = write_tiny_dataset(data, count=6)
    (data / "images" / "2.png").unlink()
    with pytest.warns(Warning, match="skipped record 'r2'"):
        output = build_index(model_dir, broken, tmp_path / "index", skip_invalid=True, progress=False)
    assert [skipped.id for skipped in output.skipped] == ["r2"]
    index = RetrievalIndex.load(tmp_path / "index")
    assert "r2" not in index.id_map
    assert len(index) == 5


def test_build_rejects_bad_arguments(trained, tmp_path):
    model_dir, manifest = trained
    cases = [
        ({"metric": "dot"}, ValueError, "metric must be one of cosine, l2"),
        ({"fields": ["audio"]}, ValueError, "unknown modality field(s) 'audio'; this model has: image, sensor"),
        ({"memory_budget": "lots"}, ValueError, "invalid memory size 'lots'"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int"),
        ({"target_recall": 1.5}, ValueError, "target_recall must be in (0, 1]"),
        ({"index_spec": "IVFx"}, ValueError, "invalid FAISS factory string 'IVFx' for dimension 4"),
    ]
    for arguments, error_type, message in cases:
        with pytest.raises(error_type) as error:
            build_index(model_dir, manifest, tmp_path / "index", progress=False, **arguments)
        assert message in str(error.value)
    assert not (tmp_path / "index").exists()

    unsaved = MultimodalVAE.from_pretrained(model_dir)
    unsaved.fingerprint = None
    with pytest.raises(ValueError, match="call model.save_pretrained"):
        build_index(unsaved, manifest, tmp_path / "index", progress=False)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="has no records"):
        build_index(model_dir, empty, tmp_path / "index", progress=False)


def test_in_memory_model_needs_model_to_load(trained, tmp_path):
    model_dir, manifest = trained
    model = MultimodalVAE.from_pretrained(model_dir)
    build_index(model, manifest, tmp_path / "index", progress=False)
    with pytest.raises(CheckpointError, match="built from a model in memory; pass model="):
        RetrievalIndex.load(tmp_path / "index")
    assert len(RetrievalIndex.load(tmp_path / "index", model)) == 36


def _interrupt(progress):
    raise KeyboardInterrupt
