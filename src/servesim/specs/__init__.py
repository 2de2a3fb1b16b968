"""Model, GPU, node and cluster specifications, and the built-in catalogs."""
