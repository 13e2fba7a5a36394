"""plotly.js is served from the installed package, picked up by collectstatic; nothing comes from a CDN."""

from __future__ import annotations

from pathlib import Path

import plotly
from django.contrib.staticfiles import finders
from django.core.management import call_command

PLOTLY = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def test_the_finder_serves_the_packages_plotly_bundle():
    assert finders.find("vendor/plotly.min.js") == str(PLOTLY)
    assert finders.find("vendor/widgetbundle.js") is None  # only the one file


def test_collectstatic_copies_it(tmp_path, settings):
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("collectstatic", "--noinput", verbosity=0)
    copied = tmp_path / "vendor" / "plotly.min.js"
    assert copied.read_bytes() == PLOTLY.read_bytes()
    assert (tmp_path / "css" / "app.css").is_file() and (tmp_path / "js" / "charts.js").is_file()


def test_templates_load_nothing_from_another_host():
    root = Path(__file__).resolve().parents[2] / "templates"
    for template in root.rglob("*.html"):
        text = template.read_text()
        assert "cdn." not in text and "https://" not in text.replace("https://{{", ""), template
