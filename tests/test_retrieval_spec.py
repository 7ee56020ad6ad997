"""Tests of choosing a FAISS index from the collection size, the dimension and a memory budget."""

from __future__ import annotations

import logging

import pytest

from polyfuse.retrieval.spec import (
    IndexSpec,
    check_factory,
    choose_index_spec,
    default_nlist,
    estimate_index_bytes,
    fit_factory_to_training_size,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MB", 512 * 10**6),
        ("4GiB", 4 * 2**30),
        ("1.5 GB", 1_500_000_000),
        ("100kib", 102_400),
        ("2048", 2048),
        ("7 B", 7),
        (1000, 1000),
        (None, None),
    ],
)
def test_parse_size_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12 parsecs", "-5MB", "0", "MB", True, 0, "1e9"])
def test_parse_size_rejects_invalid(text):
    with pytest.raises(ValueError) as error:
        parse_size(text)
    assert "memory size" in str(error.value)


def test_parse_size_error_lists_units():
    with pytest.raises(ValueError, match="KiB, MiB, GiB, TiB") as error:
        parse_size("lots")
    assert "'lots'" in str(error.value)


def test_small_collection_is_flat():
    spec = choose_index_spec(2_000, 32)
    assert spec.factory == "Flat"
    assert spec.kind == "flat"
    assert spec.estimated_bytes == estimate_index_bytes("Flat", 2_000, 32)


def test_medium_collection_is_hnsw():
    spec = choose_index_spec(50_000, 32)
    assert spec.factory == "HNSW32"
    assert spec.kind == "hnsw"


def test_million_vectors_is_ivf_flat():
    spec = choose_index_spec(1_000_000, 64)
    assert spec.factory == "IVF4096,Flat"
    assert spec.kind == "ivf"
    assert spec.nlist == 4096


def test_budget_below_graph_gives_ivf():
    count, dim = 50_000, 32
    hnsw = estimate_index_bytes("HNSW32", count, dim)
    spec = choose_index_spec(count, dim, memory_budget=hnsw - 1)
    assert spec.factory.startswith("IVF")
    assert spec.factory.endswith(",Flat")
    assert spec.estimated_bytes <= hnsw - 1
    assert "graph would exceed the memory budget" in spec.reason


def test_budget_below_flat_gives_product_quantization():
    count, dim = 50_000, 32
    ivf = estimate_index_bytes(f"IVF{default_nlist(count)},Flat", count, dim)
    spec = choose_index_spec(count, dim, memory_budget=ivf // 2)
    assert spec.factory.startswith("OPQ")
    assert ",PQ" in spec.factory
    assert spec.estimated_bytes <= ivf // 2


def test_tighter_budget_gives_smaller_codes():
    count, dim = 50_000, 32
    loose = choose_index_spec(count, dim, memory_budget="1MB")
    tight = choose_index_spec(count, dim, memory_budget="800KB")
    assert loose.estimated_bytes > tight.estimated_bytes
    assert tight.estimated_bytes <= 800_000


def test_small_collection_over_budget_is_quantized():
    spec = choose_index_spec(5_000, 32, memory_budget="300KB")
    # Too few vectors for OPQ's 8-bit codebooks: no rotation, and 7-bit codes.
    assert spec.factory.startswith("IVF")
    assert spec.factory.endswith("x7np")
    assert spec.estimated_bytes <= 300_000


def test_budget_too_small_names_minimum():
    with pytest.raises(ValueError) as error:
        choose_index_spec(1_000_000, 64, memory_budget="1MB")
    message = str(error.value)
    assert "memory budget 976.6 KiB is too small for 1,000,000 vectors of dimension 64" in message
    assert "Raise the memory budget" in message


def test_requested_factory_kept_when_trainable():
    spec = choose_index_spec(100_000, 32, factory="IVF256,Flat")
    assert spec == IndexSpec("IVF256,Flat", "ivf", estimate_index_bytes("IVF256,Flat", 100_000, 32), "requested factory string 'IVF256,Flat'")


def test_requested_ivf_falls_back_to_fewer_lists(caplog):
    with caplog.at_level(logging.WARNING, logger="polyfuse.retrieval.spec"):
        spec = choose_index_spec(3_000, 16, factory="IVF1024,Flat")
    assert spec.factory == "IVF76,Flat"
    assert spec.adjustments == ("IVF1024 needs at least 39,936 training vectors but only 3,000 are available; using IVF76",)
    assert "using IVF76" in caplog.text


def test_requested_pq_falls_back_to_fewer_bits():
    spec = choose_index_spec(3_000, 16, factory="OPQ8,IVF16,PQ8")
    assert spec.factory == "IVF16,PQ8x6np"
    assert spec.adjustments == (
        "OPQ8 trains 8-bit codebooks that need at least 9,984 training vectors but only 3,000 are available; "
        "leaving the rotation out",
        "PQ8x8 needs at least 9,984 training vectors but only 3,000 are available; using PQ8x6",
    )


def test_requested_pq_skips_polysemous_training():
    spec = choose_index_spec(20_000, 16, factory="OPQ8,IVF16,PQ8")
    assert spec.factory == "OPQ8,IVF16,PQ8x8np"
    assert spec.adjustments == ()


def test_fast_scan_bits_untouched():
    factory, adjustments = fit_factory_to_training_size("IVF16,PQ8x4fs", 5_000)
    assert factory == "IVF16,PQ8x4fs"
    assert adjustments == ()


def test_requested_factory_over_budget_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="polyfuse.retrieval.spec"):
        spec = choose_index_spec(100_000, 32, memory_budget="1MB", factory="Flat")
    assert spec.factory == "Flat"
    assert "above the memory budget" in caplog.text


@pytest.mark.parametrize("factory", ["IDMap,Flat", "IDMap2,HNSW32"])
def test_requested_id_map_rejected(factory):
    with pytest.raises(ValueError, match="leave it out"):
        choose_index_spec(1_000, 8, factory=factory)


@pytest.mark.parametrize(("count", "dim"), [(0, 8), (10, 0), (-1, 8), (2.5, 8), (True, 8)])
def test_choose_rejects_bad_sizes(count, dim):
    with pytest.raises(ValueError, match="must be a positive"):
        choose_index_spec(count, dim)


def test_default_nlist_respects_training_points():
    assert default_nlist(1_000_000) == 4096
    assert default_nlist(20_000) == 512
    for count in (1, 10, 39, 40, 1_000, 12_345):
        assert 1 <= default_nlist(count) * 39 <= max(39, count)


@pytest.mark.parametrize(
    ("factory", "kind"),
    [("Flat", "flat"), ("PQ8", "flat"), ("HNSW32", "hnsw"), ("IVF64,Flat", "ivf"), ("OPQ8,IVF64,PQ8", "ivf"), ("NSG16", "other")],
)
def test_check_factory_kind(factory, kind):
    assert check_factory(factory, 16) == kind


def test_invalid_factory_names_reason():
    with pytest.raises(ValueError) as error:
        choose_index_spec(1_000, 16, factory="Blah12")
    assert "invalid FAISS factory string 'Blah12' for dimension 16: could not parse index string Blah12" in str(error.value)
    with pytest.raises(ValueError, match="multiple of the number of subquantizers"):
        choose_index_spec(50_000, 16, factory="OPQ5,IVF16,PQ5")


def test_estimates_scale_with_count():
    for factory in ("Flat", "HNSW32", "IVF256,Flat", "OPQ8,IVF256,PQ8"):
        small, large = estimate_index_bytes(factory, 10_000, 32), estimate_index_bytes(factory, 20_000, 32)
        assert small < large
    assert estimate_index_bytes("LSH", 10_000, 32) is None
