"""Object detection in JAX with static shapes: box ops, NMS and YOLO decoding (jit-friendly)."""
