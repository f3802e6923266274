#!/usr/bin/env python
"""Django's command-line utility; defaults to the local development settings.

https://docs.djangoproject.com/en/5.2/ref/django-admin/
"""

import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    if os.environ["DJANGO_SETTINGS_MODULE"] == "config.settings.local":
        from config.env import load_dotenv

        load_dotenv(Path(__file__).resolve().parent / ".env")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
