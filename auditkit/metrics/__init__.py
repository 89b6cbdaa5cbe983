"""Quality metrics: pure functions over feature tensors, plus the extractors that make the features."""

from auditkit.metrics.cache import FeatureCache, cache_key, tensor_fingerprint
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
from auditkit.metrics.prdc import knn_radii, precision_recall_density_coverage

__all__ = [
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
