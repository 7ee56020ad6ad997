"""Cross-modal retrieval: FAISS indexes over the shared latent, searchable with any modality."""

from .builder import BuildOutput, BuildProgress, build_index
from .id_map import IdMap, RecordEntry
from .index_files import VectorIndexConfig
from .metrics import PairMetrics, RetrievalReport, average_precision_at_k, evaluate_retrieval, recall_at_k
from .search import Hit, RetrievalIndex, SearchResult
from .spec import IndexSpec, choose_index_spec, parse_size
from .store import FUSED, IndexLockedError, RetrievalSettings
from .tuning import TuningResult, tune_search_parameter
from .vector_index import SearchOutput, VectorIndex

__all__ = [
    "FUSED",
    "BuildOutput",
    "BuildProgress",
    "Hit",
    "IdMap",
    "IndexLockedError",
    "IndexSpec",
    "PairMetrics",
    "RecordEntry",
    "RetrievalIndex",
    "RetrievalReport",
    "RetrievalSettings",
    "SearchOutput",
    "SearchResult",
    "TuningResult",
    "VectorIndex",
    "VectorIndexConfig",
    "average_precision_at_k",
    "build_index",
    "choose_index_spec",
    "evaluate_retrieval",
    "parse_size",
    "recall_at_k",
    "tune_search_parameter",
]
