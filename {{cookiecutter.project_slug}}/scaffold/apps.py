from django.apps import AppConfig


class ScaffoldConfig(AppConfig):
    name = "scaffold"
    verbose_name = "Scaffolding commands"
