"""Quality metrics: pure functions over feature tensors (Fréchet distance, KID, IS, PRDC)."""
