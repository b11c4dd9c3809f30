"""Ray Serve: the same model adapters and the same vote as the labeling job, one clip at a time."""
