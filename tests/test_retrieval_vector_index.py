"""Tests of one FAISS index with ids: oracle checks against brute force, the boundaries of search,
add and remove after the build, and persistence."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from polyfuse.errors import CheckpointError
from polyfuse.retrieval import VectorIndex, VectorIndexConfig, choose_index_spec, tune_search_parameter
from polyfuse.retrieval.spec import estimate_index_bytes
from polyfuse.retrieval.tuning import recall_at_k

DIM = 16
LARGE_ID = 2**33  # ids above 2**31 must survive every path


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    faiss.omp_set_num_threads(1)


def clustered(count: int, seed: int, dim: int = DIM, clusters: int = 50) -> np.ndarray:
    """Gaussian blobs: neighbours mostly share a blob, as latents of one class do."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).normal(size=(clusters, dim)) * 2
    return (centers[rng.integers(0, clusters, count)] + 0.7 * rng.normal(size=(count, dim))).astype(np.float32)


def brute_force(database: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the rows (Q, k) and scores of the exact nearest neighbours, in numpy.

    ``metric`` is "cosine", "inner product" (vectors as given) or "l2" (squared distances).
    """
    database, queries = database.astype(np.float64), queries.astype(np.float64)
    if metric == "l2":
        distances = ((queries[:, None, :] - database[None, :, :]) ** 2).sum(-1)  # (Q, N)
        rows = np.argsort(distances, axis=1, kind="stable")[:, :k]
        return rows, np.take_along_axis(distances, rows, axis=1)
    if metric == "cosine":
        database = database / np.linalg.norm(database, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    similarities = queries @ database.T  # (Q, N)
    rows = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    return rows, np.take_along_axis(similarities, rows, axis=1)


def built(factory: str, database: np.ndarray, ids: np.ndarray, metric: str = "cosine", fingerprint: str | None = None) -> VectorIndex:
    index = VectorIndex.create(VectorIndexConfig(database.shape[1], factory, metric, fingerprint))
    index.train(database)
    index.add(database, ids)
    return index


# -- oracle: every index type against brute force -----------------------------


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_flat_matches_brute_force_exactly(metric):
    database, queries = clustered(2_000, 0), clustered(50, 1)
    spec = choose_index_spec(len(database), DIM)
    assert spec.factory == "Flat"
    ids = np.arange(len(database)) + LARGE_ID
    output = built(spec.factory, database, ids, metric).search(queries, 10)
    rows, expected = brute_force(database, queries, 10, metric)
    np.testing.assert_array_equal(output.ids, ids[rows])
    np.testing.assert_allclose(output.distances, expected, rtol=1e-4, atol=1e-4)


# (how the index is chosen, collection size, memory budget, factory, metric, minimum recall@10 on
# unseen queries). Product quantization cannot beat exact search over its own decoded codes, so
# its minimum ("codes") is that ceiling, less 0.02.
APPROXIMATE_CASES = [
    ("auto", 12_000, None, None, "cosine", 0.90),  # HNSW32
    ("auto", 12_000, "hnsw-minus-one", None, "cosine", 0.90),  # IVF-Flat: the graph does not fit
    ("auto", 10_000, "160KB", None, "cosine", "codes"),  # OPQ+IVF-PQ: a flat index does not fit
    ("factory", 12_000, None, "HNSW16", "l2", 0.90),
    ("factory", 12_000, None, "IVF64,Flat", "l2", 0.90),
    ("factory", 10_000, None, "OPQ4,IVF64,PQ4", "l2", "codes"),
]


@pytest.mark.parametrize(("chosen", "count", "budget", "factory", "metric", "minimum"), APPROXIMATE_CASES)
def test_approximate_indexes_against_brute_force(chosen, count, budget, factory, metric, minimum):
    database = clustered(count, 0)
    if budget == "hnsw-minus-one":
        budget = estimate_index_bytes("HNSW32", count, DIM) - 1
    spec = choose_index_spec(count, DIM, budget, factory)
    expected_prefix = {None: "HNSW32", "160KB": "OPQ"}.get(budget, "IVF") if chosen == "auto" else factory.split(",")[0]
    assert spec.factory.startswith(expected_prefix)
    ids = np.arange(count) + LARGE_ID
    index = built(spec.factory, database, ids, metric)
    # Tuned with one set of queries, measured with another, as a cross-modal index would be.
    tuning = tune_search_parameter(index, database, ids, clustered(300, 7), target_recall=0.95)
    queries = clustered(300, 8)
    output = index.search(queries, 10)
    rows, _ = brute_force(database, queries, 10, metric)
    recall = recall_at_k(output.ids, ids[rows])
    if minimum == "codes":
        decoded = index.faiss_index.sa_decode(index.faiss_index.sa_encode(index.prepare_vectors(database)))
        decoded_rows, _ = brute_force(decoded, index.prepare_vectors(queries), 10, "l2" if metric == "l2" else "inner product")
        minimum = recall_at_k(ids[decoded_rows], ids[rows]) - 0.02
    assert recall >= minimum, f"{spec.factory} recall@10 {recall:.3f} below {minimum:.3f} (tuned {tuning.parameter}={tuning.value})"
    assert set(output.ids.ravel().tolist()) <= set(ids.tolist())


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_ivf_pq_scores_its_own_codes_exactly(metric):
    # With every list probed, IVF-PQ ranks by distances to the decoded codes: exact search over
    # the decoded vectors must give the same order.
    database, queries = clustered(2_000, 0), clustered(40, 1)
    spec = choose_index_spec(len(database), DIM, factory="IVF16,PQ4")
    index = built(spec.factory, database, np.arange(len(database)), metric)
    index.set_search_parameter(16)
    decoded = index.faiss_index.sa_decode(index.faiss_index.sa_encode(index.prepare_vectors(database)))
    inner_product = faiss.IndexFlatIP(DIM) if metric == "cosine" else faiss.IndexFlatL2(DIM)
    inner_product.add(decoded)
    expected_distances, expected_rows = inner_product.search(index.prepare_vectors(queries), 10)
    output = index.search(queries, 10)
    assert (output.ids == expected_rows).mean() > 0.97
    np.testing.assert_allclose(output.distances[:, 0], expected_distances[:, 0], rtol=1e-3, atol=1e-3)


# -- search boundaries ---------------------------------------------------------


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF2,Flat"])
def test_fewer_vectors_than_k(factory):
    database = clustered(80, 0)
    index = built(factory, database, np.arange(80) + LARGE_ID)
    index.remove(np.arange(75) + LARGE_ID)
    if index.search_parameter_name:
        index.set_search_parameter(index.max_search_parameter)
    output = index.search(database[:3], 10)
    assert output.ids.shape == (3, 5)
    for row in range(3):
        ids, distances = output.row(row)
        assert sorted(ids.tolist()) == list(range(LARGE_ID + 75, LARGE_ID + 80))
        assert len(distances) == 5


def test_row_drops_padding():
    database = clustered(100, 0)
    index = built("IVF4,Flat", database, np.arange(100))
    index.set_search_parameter(1)
    output = index.search(database[:20], 90)  # one list of four has fewer than 90 vectors
    assert (output.ids == -1).any()
    for row in range(20):
        ids, distances = output.row(row)
        assert (ids >= 0).all()
        assert len(ids) == len(distances) == (output.ids[row] >= 0).sum()


def test_empty_index_and_no_queries():
    index = VectorIndex.create(VectorIndexConfig(DIM, "Flat"))
    assert index.search(clustered(2, 0), 5).ids.shape == (2, 0)
    index.add(clustered(3, 0), np.arange(3))
    assert index.search(np.zeros((0, DIM)), 5).ids.shape == (0, 3)


def test_query_layouts_give_same_results():
    database, queries = clustered(500, 0), clustered(20, 1)
    index = built("Flat", database, np.arange(500))
    expected = index.search(queries, 5)
    layouts = [
        queries.astype(np.float64),
        np.asfortranarray(queries),
        np.repeat(queries, 2, axis=0)[::2],  # a strided view, not contiguous
        queries.tolist(),
    ]
    for layout in layouts:
        output = index.search(layout, 5)
        np.testing.assert_array_equal(output.ids, expected.ids)
    single = index.search(queries[0], 5)
    np.testing.assert_array_equal(single.ids[0], expected.ids[0])


def test_large_ids_round_trip():
    database = clustered(300, 0)
    ids = np.array([2**62 + 5, 2**31, 2**31 + 1, *range(LARGE_ID, LARGE_ID + 297)], dtype=np.int64)
    for factory in ("Flat", "HNSW16", "IVF4,Flat"):
        index = built(factory, database, ids)
        if index.search_parameter_name:
            index.set_search_parameter(index.max_search_parameter)
        output = index.search(database[:3], 1)
        np.testing.assert_array_equal(output.ids[:, 0], ids[:3])
        np.testing.assert_array_equal(index.ids, np.sort(ids))


def test_dimension_mismatch_names_both_models():
    index = built("Flat", clustered(10, 0), np.arange(10), fingerprint="a" * 64)
    with pytest.raises(ValueError) as error:
        index.search(np.zeros((2, 8)), 3, query_fingerprint="b" * 64)
    message = str(error.value)
    assert "queries have dimension 8 (from model bbbbbbbbbbbb)" in message
    assert "index contains dimension 16 vectors (from model aaaaaaaaaaaa)" in message
    assert "encode the queries with the model that built the index" in message


@pytest.mark.parametrize(
    ("queries", "k", "message"),
    [
        (np.full((2, DIM), np.nan), 3, "NaN or infinite values in rows 0, 1"),
        (np.array(["a"] * DIM), 3, "must be a numeric"),
        (np.zeros((2, 2, DIM)), 3, "must be a numeric (N, 16) array"),
        (np.zeros((1, DIM)), 0, "k must be a positive int"),
        (np.zeros((1, DIM)), 2.5, "k must be a positive int"),
    ],
)
def test_search_rejects_bad_input(queries, k, message):
    index = built("Flat", clustered(10, 0), np.arange(10))
    with pytest.raises(ValueError) as error:
        index.search(queries, k)
    assert message in str(error.value)


def test_zero_query_is_allowed_for_cosine():
    index = built("Flat", clustered(10, 0), np.arange(10))
    output = index.search(np.zeros(DIM), 3)
    np.testing.assert_allclose(output.distances, 0.0)


# -- add and remove after the build ----------------------------------------------


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF8,Flat", "OPQ4,IVF8,PQ4x4"])
def test_add_and_remove_after_build(factory):
    database = clustered(1_000, 0)
    index = built(factory, database[:800], np.arange(800) + LARGE_ID)
    if index.search_parameter_name:
        index.set_search_parameter(index.max_search_parameter)
    index.add(database[800:], np.arange(800, 1_000) + LARGE_ID)
    removed = np.arange(0, 1_000, 3) + LARGE_ID
    assert index.remove(removed) == len(removed)
    assert index.ntotal == 1_000 - len(removed)

    output = index.search(database, 10)
    assert not np.isin(output.ids, removed).any()
    kept_rows = np.setdiff1d(np.arange(1_000), removed - LARGE_ID)
    own = index.search(database[kept_rows], 1).ids[:, 0]
    if not factory.startswith("OPQ"):  # PQ codes may tie a vector with a close neighbour
        np.testing.assert_array_equal(own, kept_rows + LARGE_ID)


def test_hnsw_keeps_removed_until_compact():
    database = clustered(500, 0)
    index = built("HNSW16", database, np.arange(500))
    index.set_search_parameter(64)
    index.remove(np.arange(100))
    assert index.removed_count == 100
    with pytest.raises(ValueError, match="call compact\\(\\) before reusing them"):
        index.add(database[:1], np.array([5]))
    before = index.search(database[100:110], 5).ids
    index.compact()
    assert index.removed_count == 0
    assert index.ntotal == 400
    assert index.search_parameters == {"efSearch": 64}
    np.testing.assert_array_equal(index.search(database[100:110], 5).ids[:, 0], before[:, 0])
    index.add(database[:1], np.array([5]))
    assert index.search(database[:1], 1).ids[0, 0] == 5


def test_graph_without_selector_over_fetches():
    database = clustered(300, 0)
    index = built("NSG16", database, np.arange(300))
    assert index.kind == "other"
    removed = index.search(database[:5], 10).ids.ravel()
    removed = np.unique(removed[removed >= 0])
    index.remove(removed)
    output = index.search(database[:5], 10)
    assert not np.isin(output.ids, removed).any()
    assert output.ids.shape == (5, 10)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda index: index.add(clustered(2, 0), np.array([0, 99])), "ids already in the index: 0"),
        (lambda index: index.add(clustered(2, 0), np.array([50, 50])), "ids contain duplicates: 50"),
        (lambda index: index.add(clustered(2, 0), np.array([-1, 51])), "must be >= 0 (FAISS uses -1 for 'no result')"),
        (lambda index: index.add(clustered(2, 0), np.array([51])), "got 2 embeddings but 1 ids"),
        (lambda index: index.add(clustered(1, 0), np.array([1.5])), "must be a 1-D integer array"),
        (lambda index: index.remove(np.array([7, 1234])), "ids not in the index: 1234"),
    ],
)
def test_add_remove_reject_bad_ids(action, message):
    index = built("Flat", clustered(10, 0), np.arange(10))
    with pytest.raises(ValueError) as error:
        action(index)
    assert message in str(error.value)
    assert index.ntotal == 10


def test_remove_missing_ok():
    index = built("Flat", clustered(10, 0), np.arange(10))
    assert index.remove(np.array([3, 1234]), missing_ok=True) == 1
    assert index.ntotal == 9


def test_untrained_index_rejects_add():
    index = VectorIndex.create(VectorIndexConfig(DIM, "IVF4,Flat"))
    with pytest.raises(ValueError, match="is not trained; call train"):
        index.add(clustered(10, 0), np.arange(10))
    with pytest.raises(ValueError, match="needs at least 4 training vectors, got 3"):
        index.train(clustered(3, 0))


def test_search_parameter_checks():
    flat = built("Flat", clustered(10, 0), np.arange(10))
    with pytest.raises(ValueError, match="has no search parameter"):
        flat.set_search_parameter(4)
    ivf = built("IVF4,Flat", clustered(200, 0), np.arange(200))
    with pytest.raises(ValueError, match="takes search parameter 'nprobe', got 'efSearch'"):
        ivf.set_search_parameter(4, "efSearch")
    with pytest.raises(ValueError, match="nprobe must be a positive int"):
        ivf.set_search_parameter(0)


def test_invalid_config():
    with pytest.raises(ValueError, match="metric must be one of cosine, l2"):
        VectorIndexConfig(DIM, "Flat", "dot")
    with pytest.raises(ValueError, match="invalid FAISS factory string 'IVFx'"):
        VectorIndex.create(VectorIndexConfig(DIM, "IVFx"))


# -- persistence -----------------------------------------------------------------


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF8,Flat", "OPQ4,IVF8,PQ4x4"])
def test_save_load_round_trip(tmp_path, factory):
    database = clustered(600, 0)
    index = built(factory, database, np.arange(600) + LARGE_ID, "l2", fingerprint="f" * 64)
    if index.search_parameter_name:
        index.set_search_parameter(3)
    index.remove(np.arange(0, 600, 5) + LARGE_ID)
    expected = index.search(database[:30], 7)

    path = index.save(tmp_path / "index.faiss")
    loaded = VectorIndex.load(path)
    assert loaded.config == index.config
    assert loaded.kind == index.kind
    assert loaded.ntotal == index.ntotal
    assert loaded.search_parameters == index.search_parameters
    assert loaded.removed_count == index.removed_count
    np.testing.assert_array_equal(loaded.ids, index.ids)
    output = loaded.search(database[:30], 7)
    np.testing.assert_array_equal(output.ids, expected.ids)
    np.testing.assert_allclose(output.distances, expected.distances, rtol=1e-5)


def test_memory_mapped_ivf(tmp_path):
    database = clustered(600, 0)
    index = built("IVF8,Flat", database, np.arange(600) + LARGE_ID)
    index.set_search_parameter(8)
    expected = index.search(database[:20], 5)
    source = index.save(tmp_path / "source.faiss")

    mapped = VectorIndex.load(source, mmap=True)
    np.testing.assert_array_equal(mapped.search(database[:20], 5).ids, expected.ids)
    # A copy saved from the mapped index must stand alone once the source is gone.
    copy = mapped.save(tmp_path / "copy.faiss")
    del mapped
    source.unlink()
    reloaded = VectorIndex.load(copy, mmap=True)
    np.testing.assert_array_equal(reloaded.search(database[:20], 5).ids, expected.ids)
    # Changing a mapped index reads it into memory first.
    reloaded.remove(np.array([LARGE_ID]))
    reloaded.add(database[:1] * 3, np.array([7]))
    assert reloaded.ntotal == 600
    assert reloaded.search(database[:1] * 3, 1).ids[0, 0] == 7


def test_mmap_rejected_for_graph(tmp_path):
    path = built("HNSW16", clustered(50, 0), np.arange(50)).save(tmp_path / "graph.faiss")
    with pytest.raises(ValueError, match="memory-mapping supports IVF indexes only"):
        VectorIndex.load(path, mmap=True)


def test_load_reports_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="no settings file"):
        VectorIndex.load(tmp_path / "missing.faiss")
    path = built("Flat", clustered(10, 0), np.arange(10)).save(tmp_path / "index.faiss")
    path.unlink()
    with pytest.raises(CheckpointError, match="is missing but its settings are in"):
        VectorIndex.load(path)
