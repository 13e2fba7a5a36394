"""plotly.js, served from the installed `plotly` package as `vendor/plotly.min.js`.

A staticfiles finder rather than a copy in the tree or a STATICFILES_DIRS entry: the bundle is always the
one of the installed package (no build step to forget), and only that one file is exposed — the package's
data folder also holds a 4.8 MB widget bundle and data sets that `collectstatic` has no reason to copy.
`collectstatic` picks it up like any static file, and whitenoise serves it from STATIC_ROOT.
"""

from __future__ import annotations

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = "vendor/plotly.min.js"
_SOURCE_DIR = Path(plotly.__file__).resolve().parent / "package_data"


class _VendorStorage(FileSystemStorage):
    """The package's data folder, seen as holding `vendor/plotly.min.js`."""

    def path(self, name: str) -> str:
        return str(_SOURCE_DIR / Path(name).name)


class PlotlyFinder(BaseFinder):
    def __init__(self, *args, **kwargs):
        self.storage = _VendorStorage(location=str(_SOURCE_DIR))
        self.storage.prefix = None

    def check(self, **kwargs):
        from django.core.checks import Error

        if not (_SOURCE_DIR / "plotly.min.js").is_file():
            return [Error(f"plotly.min.js is missing from {_SOURCE_DIR}", id="dashboard.E001")]
        return []

    def find(self, path: str, find_all: bool = False, **kwargs):
        if path != PLOTLY_JS:
            return []
        match = str(_SOURCE_DIR / "plotly.min.js")
        return [match] if find_all else match

    def list(self, ignore_patterns):
        yield PLOTLY_JS, self.storage
