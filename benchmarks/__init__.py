"""Benchmarks of keras-ssl: accuracy at equal budget, and step throughput."""
