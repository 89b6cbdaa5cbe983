"""Quality metrics: pure functions over feature tensors, plus the extractors that make the features."""

from auditkit.metrics.bootstrap import Interval, bootstrap_ci, fid_ci, kid_ci, prdc_ci
from auditkit.metrics.cache import FeatureCache, cache_key, tensor_fingerprint
from auditkit.metrics.compute import (
    SourceFeatures,
    compare,
    compute_metrics,
    fast_deviation,
    resolve_source,
    source_features,
)
from auditkit.metrics.distributed import Shard, current_shard
from auditkit.metrics.features import FeatureExtractor, get_extractor, inception_extractor, register_extractor
from auditkit.metrics.frechet import (
    FeatureStats,
    FrechetReference,
    feature_statistics,
    fid_from_features,
    frechet_distance,
)
from auditkit.metrics.inception_score import inception_score
from auditkit.metrics.kid import kernel_inception_distance
from auditkit.metrics.memorization import MemorizationResult, memorization
from auditkit.metrics.prdc import knn_radii, precision_recall_density_coverage
from auditkit.metrics.prdc_resample import PRDCResampler

__all__ = [
    "Interval",
    "MemorizationResult",
    "PRDCResampler",
    "Shard",
    "SourceFeatures",
    "bootstrap_ci",
    "compare",
    "compute_metrics",
    "current_shard",
    "fast_deviation",
    "fid_ci",
    "kid_ci",
    "memorization",
    "prdc_ci",
    "resolve_source",
    "source_features",
    "FeatureCache",
    "FeatureExtractor",
    "FeatureStats",
    "FrechetReference",
    "cache_key",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "get_extractor",
    "inception_extractor",
    "inception_score",
    "kernel_inception_distance",
    "knn_radii",
    "precision_recall_density_coverage",
    "register_extractor",
    "tensor_fingerprint",
]
