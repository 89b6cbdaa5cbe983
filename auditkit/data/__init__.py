"""Data sets: every source yields an ``ImageSet`` (float32 ``[0, 1]`` N×C×H×W images plus labels)."""

from auditkit.data.digits import Digits
from auditkit.data.folder import IMAGE_EXTENSIONS, ImageFolder, load_image
from auditkit.data.imageset import ImageSet, SkippedFile
from auditkit.data.shapes import ATTRIBUTES as SHAPES_ATTRIBUTES
from auditkit.data.shapes import SKEW_PRESETS, Shapes, ShapesSkew, parse_skew

__all__ = [
    "SHAPES_ATTRIBUTES",
    "SKEW_PRESETS",
    "IMAGE_EXTENSIONS",
    "Digits",
    "ImageFolder",
    "ImageSet",
    "Shapes",
    "ShapesSkew",
    "SkippedFile",
    "load_image",
    "parse_skew",
]
