"""2D open-vocabulary teachers (CLIP dense and instance features, a synthetic oracle)."""
