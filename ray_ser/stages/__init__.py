"""Ray Data stages: callable classes (stateful) and plain functions. No model internals."""
