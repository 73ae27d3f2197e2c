"""Per-example LoRA gradients (one forward+backward per batch) and the LESS features built from them."""
