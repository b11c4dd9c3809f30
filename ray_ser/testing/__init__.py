"""Scaffolding for the demo, the tests and the benchmarks: an embedded S3 server, tiny random models, raw HTTP."""
