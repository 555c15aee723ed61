"""Prefect flows: thin wiring of `smo_labelstudio` functions, one concept per file."""
