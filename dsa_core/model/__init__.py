"""The causal Wan2.1 DiT, its attention modes and the confidence head."""

from .attention import KVCache
from .confidence import ConfidenceHead
from .wan import CausalWanModel, ModelOutput, TextContext

__all__ = ["CausalWanModel", "ConfidenceHead", "KVCache", "ModelOutput", "TextContext"]
