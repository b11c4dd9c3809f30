"""The README's main command (`ray-ser demo`) and what it needs: the synthetic espeak corpus, the
classical baseline, the report. Scaffolding around the package, not part of the labeling path."""
