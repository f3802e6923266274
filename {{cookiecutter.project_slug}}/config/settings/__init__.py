"""Settings modules: ``base`` holds what every environment shares; ``local``, ``test``
and ``production`` each import it and change only what they name.

https://docs.djangoproject.com/en/5.2/topics/settings/
"""
