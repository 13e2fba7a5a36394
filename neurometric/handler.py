"""The WSGI handler: an API call (/v1/) goes through settings.API_MIDDLEWARE, a page through MIDDLEWARE.

The page middleware — sessions, CSRF, the signed-in user, flash messages, static files, X-Frame-Options,
APPEND_SLASH — has nothing to do for a call that authenticates with a bearer key and answers JSON, yet it
ran on every one: about 5 % of a chat completion's CPU at 32 connections (py-spy). So the handler builds
a second, shorter chain for /v1/ from API_MIDDLEWARE, in the same order as in MIDDLEWARE. The view, URL
resolution and the `process_view` / `process_exception` hooks are Django's, shared by both chains. The
tests' API client takes the same chains (tests/conftest.py).
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.urls import set_urlconf
from django.utils.log import log_response
from django.utils.module_loading import import_string

from gateway.middleware import is_api


class ApiChain:
    """For a Django handler class: the two chains, chosen per request by its path."""

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async)
        self._page_chain = self._middleware_chain
        self._api_chain = self._chain(settings.API_MIDDLEWARE)

    def _chain(self, paths: list[str]):
        unknown = [path for path in paths if path not in settings.MIDDLEWARE]
        if unknown:
            raise ValueError(f"API_MIDDLEWARE must be part of MIDDLEWARE; not there: {', '.join(unknown)}")
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(paths):
            handler = convert_exception_to_response(import_string(path)(handler))
        return handler

    def get_response(self, request):
        """As Django's, with the chain chosen by the path."""
        set_urlconf(settings.ROOT_URLCONF)
        chain = self._api_chain if is_api(request) else self._page_chain
        response = chain(request)
        response._resource_closers.append(request.close)
        if response.status_code >= 400:
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        return response


class Handler(ApiChain, WSGIHandler):
    """The application gunicorn serves (neurometric/wsgi.py)."""
