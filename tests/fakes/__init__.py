"""Neurometric's own fake LLM provider (OpenAI, Anthropic and Gemini wire formats).

``from tests.fakes import FakeProvider`` works; the import is lazy so that
``python -m tests.fakes.server`` does not import the server module twice.
"""

__all__ = ["FakeProvider"]


def __getattr__(name):
    if name == "FakeProvider":
        from tests.fakes.server import FakeProvider

        return FakeProvider
    raise AttributeError(name)
