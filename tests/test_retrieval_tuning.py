"""Tests of tuning nprobe and efSearch to a target recall with queries unlike the indexed vectors."""

from __future__ import annotations

import logging

import faiss
import numpy as np
import pytest

from polyfuse.retrieval import VectorIndex, VectorIndexConfig, tune_search_parameter
from polyfuse.retrieval.tuning import exact_neighbours, per_query_recall, recall_at_k

DIM = 16


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    faiss.omp_set_num_threads(1)


@pytest.fixture(scope="module")
def collection():
    """Indexed vectors from blobs, and two query sets: the vectors themselves, and a noisy other view."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(40, DIM))
    labels = rng.integers(0, 40, 6_000)
    database = (centers[labels] + rng.normal(size=(6_000, DIM))).astype(np.float32)
    # Another modality of the same records lands near them but not on them.
    other_view = (database[:600] + rng.normal(size=(600, DIM))).astype(np.float32)
    return database, np.arange(6_000, dtype=np.int64), other_view


def ivf_index(database, ids, factory="IVF64,Flat"):
    index = VectorIndex.create(VectorIndexConfig(DIM, factory))
    index.train(database)
    index.add(database, ids)
    return index


def test_tuned_value_is_smallest_reaching_target(collection):
    database, ids, queries = collection
    index = ivf_index(database, ids)
    result = tune_search_parameter(index, database, ids, queries, target_recall=0.95)
    assert result.parameter == "nprobe"
    assert result.reached
    assert result.recall_lower_bound >= 0.95
    assert result.recall >= result.recall_lower_bound
    assert index.search_parameters == {"nprobe": result.value}
    assert result.queries == 600
    assert [value for value, _ in result.curve] == sorted(value for value, _ in result.curve)

    truth = exact_neighbours(index, database, ids, queries, 10)
    for value, expected in ((result.value, result.recall), (result.value - 1, None)):
        index.set_search_parameter(value)
        recalls = per_query_recall(index.search(queries, 10).ids, truth)
        if expected is not None:
            assert recalls.mean() == pytest.approx(expected)
        else:
            assert recalls.mean() - 1.96 * recalls.std() / np.sqrt(len(recalls)) < 0.95


def test_cross_modal_queries_need_more_search(collection):
    database, ids, other_view = collection
    index = ivf_index(database, ids)
    own = tune_search_parameter(index, database, ids, database[:600], target_recall=0.95)
    cross = tune_search_parameter(index, database, ids, other_view, target_recall=0.95)
    assert cross.value > own.value


def test_hnsw_tunes_ef_search(collection):
    database, ids, queries = collection
    index = VectorIndex.create(VectorIndexConfig(DIM, "HNSW8"))
    index.add(database, ids)
    result = tune_search_parameter(index, database, ids, queries, target_recall=0.97, query_source="other view")
    assert result.parameter == "efSearch"
    assert result.value >= 10  # below k, HNSW explores k candidates anyway
    assert result.reached
    assert result.query_source == "other view"
    assert index.search_parameters == {"efSearch": result.value}


def test_unreachable_target_warns(collection, caplog):
    database, ids, queries = collection
    index = ivf_index(database, ids, "IVF16,PQ2x4")
    with caplog.at_level(logging.WARNING, logger="polyfuse.retrieval.tuning"):
        result = tune_search_parameter(index, database, ids, queries, target_recall=0.99)
    assert not result.reached
    assert result.value == 16
    assert "below the target 0.990; using 16" in caplog.text


def test_flat_needs_no_tuning(collection):
    database, ids, queries = collection
    index = ivf_index(database, ids, "Flat")
    assert tune_search_parameter(index, database, ids, queries) is None


def test_tuning_subsamples_queries(collection):
    database, ids, queries = collection
    index = ivf_index(database, ids)
    result = tune_search_parameter(index, database, ids, queries, max_queries=100)
    assert result.queries == 100


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"target_recall": 0.0}, "target_recall must be in (0, 1]"),
        ({"target_recall": 1.5}, "target_recall must be in (0, 1]"),
        ({"queries": np.zeros((0, DIM))}, "no tuning queries"),
        ({"database_rows": 10}, "pass exactly the indexed vectors"),
    ],
)
def test_tuning_rejects_bad_input(collection, arguments, message):
    database, ids, queries = collection
    index = ivf_index(database, ids)
    rows = arguments.pop("database_rows", len(database))
    arguments.setdefault("queries", queries)
    with pytest.raises(ValueError) as error:
        tune_search_parameter(index, database[:rows], ids[:rows], **arguments)
    assert message in str(error.value)


def test_recall_ignores_padding():
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, -1, -1], [5, 6, 7, 9]])
    np.testing.assert_allclose(per_query_recall(found, truth), [0.5, 0.75])
    assert recall_at_k(found, truth) == pytest.approx(0.625)
