from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neurometric.settings")
django.setup(set_prefix=False)  # as django.core.wsgi.get_wsgi_application, with our handler

from neurometric.handler import Handler  # noqa: E402 - needs the apps loaded

application = Handler()
