"""Template context shared by every page: the project's name for titles and headers.

https://docs.djangoproject.com/en/5.2/ref/templates/api/#writing-your-own-context-processors
"""

from django.conf import settings
from django.http import HttpRequest


def project(request: HttpRequest) -> dict[str, str]:
    return {"project_name": settings.PROJECT_NAME}
