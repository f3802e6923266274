"""The benchmark's app, in INSTALLED_APPS of ``bench.settings`` only when chatbench
asks a server for its hop timestamps (``--hops``, bench/hops.py)."""

from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "bench"

    def ready(self) -> None:
        from bench import hops

        path = hops.enabled()
        if path:
            hops.install(path)
