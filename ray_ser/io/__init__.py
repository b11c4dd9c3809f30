"""Audio, manifests, object-store paths and the Parquet sink. No Ray, no models."""
