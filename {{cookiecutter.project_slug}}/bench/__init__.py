"""The chat benchmark: ``python -m bench.chatbench`` (docs/benchmark.md)."""
