"""Tests of searching a retrieval index with any modalities, and of add, update and remove after the build."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from conftest import tiny_run_config, write_tiny_dataset
from polyfuse import encode_records
from polyfuse.errors import CheckpointError
from polyfuse.model import MultimodalVAE
from polyfuse.retrieval import FUSED, RetrievalIndex, build_index
from polyfuse.retrieval import search as search_module
from polyfuse.retrieval.store import publish_version, read_pointer, write_version
from polyfuse.training import RunConfig, train

COUNT = 36


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    faiss.omp_set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on labelled image+sensor records, their manifest, and extra records not indexed."""
    folder = tmp_path_factory.mktemp("retrieval-search")
    manifest = write_tiny_dataset(folder / "data", count=COUNT)
    extra = write_tiny_dataset(folder / "extra", count=6, seed=5)
    train(manifest, folder / "model", RunConfig.from_dict(tiny_run_config(epochs=3)), progress=False)
    return folder / "model", manifest, extra


@pytest.fixture
def index_dir(trained, tmp_path):
    model_dir, manifest, _ = trained
    build_index(model_dir, manifest, tmp_path / "index", progress=False)
    return tmp_path / "index"


def image_of(manifest: Path, number: int) -> str:
    return str(manifest.parent / "images" / f"{number}.png")


def sensor_of(manifest: Path, number: int) -> str:
    return str(manifest.parent / "sensor" / f"{number}.npy")


def test_search_each_target(trained, index_dir):
    _, manifest, _ = trained
    index = RetrievalIndex.load(index_dir)
    assert index.targets == ("image", "sensor", FUSED)
    for target in index.targets:
        [result] = index.search([{"image": image_of(manifest, 7), "id": "seven"}], target, k=5)
        assert result.query_id == "seven"
        assert result.fields == ("image",)
        assert result.target == target
        assert len(result.hits) == 5
        scores = [hit.score for hit in result.hits]
        assert scores == sorted(scores, reverse=True)
        assert all(-1.0001 <= score <= 1.0001 for score in scores)
        for hit in result.hits:
            number = int(hit.record_id[1:])
            assert hit.label == number % 3
            assert hit.paths == {"image": str(Path(image_of(manifest, number)).resolve()), "sensor": str(Path(sensor_of(manifest, number)).resolve())}
            assert hit.path == (hit.paths[target] if target != FUSED else None)
    [own] = index.search([{"image": image_of(manifest, 7)}], "image", k=1)
    assert own.hits[0].record_id == "r7"
    assert own.hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_several_modalities_are_fused(trained, index_dir):
    _, manifest, _ = trained
    index = RetrievalIndex.load(index_dir)
    query = {"image": image_of(manifest, 4), "sensor": sensor_of(manifest, 4)}
    [result] = index.search([query], "sensor", k=6)
    assert result.fields == ("image", "sensor")
    fused = encode_records(index.model, [query]).mean  # the model's fusion of both experts
    [expected] = index.search_embeddings(fused, "sensor", k=6)
    assert [hit.record_id for hit in result.hits] == [hit.record_id for hit in expected.hits]
    np.testing.assert_allclose([hit.score for hit in result.hits], [hit.score for hit in expected.hits], rtol=1e-5)
    [single] = index.search([{"image": image_of(manifest, 4)}], "sensor", k=6)
    assert [hit.score for hit in single.hits] != [hit.score for hit in result.hits]


def test_batched_queries_of_mixed_fields(trained, index_dir):
    _, manifest, _ = trained
    index = RetrievalIndex.load(index_dir)
    queries = [{"image": image_of(manifest, 1)}, {"sensor": np.load(sensor_of(manifest, 2))}, {"image": image_of(manifest, 3), "sensor": sensor_of(manifest, 3)}]
    results = index.search(queries, FUSED, k=3)
    assert [result.query_id for result in results] == ["0", "1", "2"]
    assert [result.fields for result in results] == [("image",), ("sensor",), ("image", "sensor")]
    for query, result in zip(queries, results):
        [alone] = index.search([query], FUSED, k=3)
        assert [hit.record_id for hit in alone.hits] == [hit.record_id for hit in result.hits]


def test_k_above_collection_size(trained, index_dir):
    _, manifest, _ = trained
    index = RetrievalIndex.load(index_dir)
    [result] = index.search([{"image": image_of(manifest, 0)}], "image", k=1000)
    assert len(result.hits) == COUNT
    assert len({hit.record_id for hit in result.hits}) == COUNT


@pytest.mark.parametrize(
    ("queries", "target", "error_type", "message"),
    [
        ([{"audio": "x.wav"}], "image", ValueError, "unknown field(s) 'audio'; the model's fields are image, sensor"),
        ([{"id": "q"}], "image", ValueError, "query 0 has no value"),
        ([{"image": None}], "image", ValueError, "query 0 has no value"),
        ({"image": "x.png"}, "image", TypeError, "wrap a single query as [query]"),
        (["x.png"], "image", TypeError, "query 0 must be a dict"),
        ([{"image": "x.png"}], "audio", ValueError, "unknown target 'audio'; this index has: image, sensor, fused"),
    ],
)
def test_search_rejects_bad_queries(index_dir, queries, target, error_type, message):
    index = RetrievalIndex.load(index_dir)
    with pytest.raises(error_type) as error:
        index.search(queries, target)
    assert message in str(error.value)


def test_search_of_missing_file_names_it(index_dir, tmp_path):
    index = RetrievalIndex.load(index_dir)
    with pytest.raises(ValueError, match="file not found"):
        index.search([{"image": str(tmp_path / "missing.png")}], "image")


def test_empty_query_list(index_dir):
    assert RetrievalIndex.load(index_dir).search([], "image") == []


def test_load_rejects_other_model(trained, index_dir, tmp_path):
    model_dir, manifest, _ = trained
    other = MultimodalVAE.from_pretrained(model_dir)
    for parameter in other.parameters():
        parameter.data.mul_(0.5)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(CheckpointError) as error:
        RetrievalIndex.load(index_dir, other)
    message = str(error.value)
    assert f"model fingerprint {other.fingerprint[:12]} differs from {MultimodalVAE.from_pretrained(model_dir).fingerprint[:12]}" in message
    assert "rebuild the index with this one" in message


def test_load_reports_missing_model_folder(trained, tmp_path):
    model_dir, manifest, _ = trained
    moved = tmp_path / "model"
    MultimodalVAE.from_pretrained(model_dir).save_pretrained(moved)
    build_index(moved, manifest, tmp_path / "index", progress=False)
    for path in sorted(moved.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    moved.rmdir()
    with pytest.raises(CheckpointError, match="which is missing; pass model="):
        RetrievalIndex.load(tmp_path / "index")
    assert len(RetrievalIndex.load(tmp_path / "index", MultimodalVAE.from_pretrained(model_dir))) == COUNT


def test_load_without_index(tmp_path):
    with pytest.raises(CheckpointError, match="no index.json in"):
        RetrievalIndex.load(tmp_path)


# -- add, update and remove after the build ----------------------------------------------


def id_map_agrees(index: RetrievalIndex) -> None:
    """Every searchable id has an entry and every entry's targets hold exactly its key."""
    for target, vector_index in index.indexes.items():
        keys = {entry.key for entry in index.id_map if target in entry.targets}
        assert set(vector_index.ids.tolist()) == keys, target
    assert len({entry.key for entry in index.id_map}) == len(index)


@pytest.mark.parametrize("factory", [None, "HNSW8", "IVF2,Flat"])
def test_add_update_remove_round_trip(trained, tmp_path, factory):
    model_dir, manifest, extra = trained
    build_index(model_dir, manifest, tmp_path / "index", index_spec=factory, progress=False)
    index = RetrievalIndex.load(tmp_path / "index")
    for vector_index in index.indexes.values():
        if vector_index.search_parameter_name:
            vector_index.set_search_parameter(vector_index.max_search_parameter)

    # Add: new records from dicts (relative paths against base_dir) and an image-only record.
    added = [{"id": f"new{number}", "image": f"images/{number}.png", "sensor": f"sensor/{number}.npy", "label": number % 3, "note": "added"} for number in range(5)]
    added.append({"id": "image-only", "image": "images/5.png", "label": 2})
    assert index.add(added, base_dir=extra.parent) == 6
    assert len(index) == COUNT + 6
    # Update: r1 now shows the image of r2; remove: r3 and r4.
    assert index.update([{"id": "r1", "image": image_of(manifest, 2), "label": 2}]) == 1
    assert index.remove(["r3", "r4"]) == 2
    id_map_agrees(index)
    assert index.indexes["sensor"].ntotal == COUNT + 5 - 1 - 2  # r1 lost its sensor series
    assert "image-only" not in [entry.record_id for entry in index.id_map if "sensor" in entry.targets]

    def observed(current: RetrievalIndex) -> list:
        queries = [{"image": str(extra.parent / "images" / "0.png")}, {"image": image_of(manifest, 2)}, {"image": image_of(manifest, 3)}]
        return [[(hit.record_id, round(hit.score, 5), hit.label, hit.metadata) for hit in result.hits] for result in current.search(queries, "image", k=8)]

    before = observed(index)
    assert before[0][0][:3] == ("new0", pytest.approx(1.0, abs=1e-4), 0)
    assert before[0][0][3] == {"note": "added"}
    assert {before[1][0][0], before[1][1][0]} == {"r1", "r2"}  # r1 and r2 now hold the same image
    assert not {"r3", "r4"} & {hit[0] for hits in before for hit in hits}

    index.save()
    reloaded = RetrievalIndex.load(tmp_path / "index")
    id_map_agrees(reloaded)
    assert observed(reloaded) == before
    assert reloaded.settings.next_key == COUNT + 6 + 1
    assert [path.name for path in (tmp_path / "index").iterdir() if path.name.startswith("v-")] == [read_pointer(tmp_path / "index").name]


def test_add_update_remove_reject_bad_ids(index_dir):
    index = RetrievalIndex.load(index_dir)
    cases = [
        (lambda: index.add([{"id": "r0", "image": "x.png"}]), "records already in the index: 'r0'; use update()"),
        (lambda: index.add([{"image": "x.png"}]), "have no 'id'"),
        (lambda: index.add([{"id": "a", "image": "x.png"}, {"id": "a", "image": "y.png"}]), "duplicate record ids 'a'"),
        (lambda: index.update([{"id": "nope", "image": "x.png"}]), "records not in the index: 'nope'; use add()"),
        (lambda: index.remove(["nope"]), "records not in the index: 'nope'"),
    ]
    for action, message in cases:
        with pytest.raises(ValueError) as error:
            action()
        assert message in str(error.value)
    assert len(index) == COUNT


def test_failed_update_changes_nothing(trained, index_dir, tmp_path):
    index = RetrievalIndex.load(index_dir)
    with pytest.raises(ValueError, match="file not found"):
        index.update([{"id": "r1", "image": str(tmp_path / "missing.png")}])
    assert "r1" in index.id_map
    id_map_agrees(index)


def test_save_compacts_graph(trained, tmp_path):
    model_dir, manifest, _ = trained
    build_index(model_dir, manifest, tmp_path / "index", index_spec="HNSW8", progress=False)
    index = RetrievalIndex.load(tmp_path / "index")
    index.remove([f"r{number}" for number in range(12)])
    assert index.indexes["image"].removed_count == 12
    index.save()
    assert index.indexes["image"].removed_count == 0
    reloaded = RetrievalIndex.load(tmp_path / "index")
    assert reloaded.indexes["image"].removed_count == 0
    assert reloaded.indexes["image"].ntotal == COUNT - 12
    id_map_agrees(reloaded)


def test_add_first_record_of_new_modality(trained, tmp_path):
    model_dir, manifest, extra = trained
    # No indexed record has a sensor series, so the index starts without a sensor target.
    images_only = manifest.parent / "images-only.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    images_only.write_text("".join(json.dumps({key: value for key, value in line.items() if key != "sensor"}) + "\n" for line in lines))
    build_index(model_dir, images_only, tmp_path / "index", progress=False)
    index = RetrievalIndex.load(tmp_path / "index")
    assert index.targets == ("image", FUSED)

    index.add([{"id": "x", "image": "images/0.png", "sensor": "sensor/0.npy"}], base_dir=extra.parent)
    assert index.targets == ("image", FUSED, "sensor")
    assert index.indexes["sensor"].ntotal == 1
    [result] = index.search([{"sensor": str(extra.parent / "sensor" / "0.npy")}], "sensor", k=3)
    assert [hit.record_id for hit in result.hits] == ["x"]
    index.save()
    reloaded = RetrievalIndex.load(tmp_path / "index")
    assert reloaded.targets == ("image", FUSED, "sensor")
    assert reloaded.settings.index_specs["sensor"]["factory"] == "Flat"
    id_map_agrees(reloaded)


def test_load_retries_when_version_changes(index_dir, monkeypatch):
    first = RetrievalIndex.load(index_dir)
    original = search_module._read_version
    calls = []

    def publish_then_read(version, mmap):
        # The first read races with a writer that publishes a new version and deletes this one.
        if not calls:
            calls.append(version)
            written = write_version(index_dir / ".saving-race", first.settings, first.indexes, first.id_map)
            publish_version(index_dir, written)
        return original(version, mmap)

    monkeypatch.setattr(search_module, "_read_version", publish_then_read)
    loaded = RetrievalIndex.load(index_dir)
    assert not calls[0].exists()
    assert loaded.settings == first.settings
    assert len(loaded) == COUNT
