"""The chainrule server: wiring, the API layer, caches, metrics, logs and settings around the engine."""
