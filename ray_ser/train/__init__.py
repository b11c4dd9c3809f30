"""Ray Train fine-tuning of the branches: losses, data preparation, loops."""
