"""requests' transport adapter for the providers: its pools are gateway/providers/http1.py's, one per
origin, remembered without re-parsing the URL on every call (requests builds urllib3's pool key for each
request: 2 % of a chat completion's CPU). Through a proxy, urllib3's own pools, as requests sets them up.

The adapter is requests' (its `send` maps urllib3's errors to requests' and is what the `responses` library
replaces in unit tests); what it calls on the pool, and reads of the answer, are http1's.
"""

from __future__ import annotations

from requests import Response
from requests.adapters import HTTPAdapter
from requests.utils import get_encoding_from_headers, select_proxy

from gateway.providers.http1 import Pool

_MAX_REMEMBERED = 16  # origins whose pool an adapter remembers (a provider has one or two)


class PooledAdapter(HTTPAdapter):
    """requests' transport adapter, with http1's pools for direct connections."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self._pools: dict[tuple, Pool] = {}

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        if proxies and select_proxy(request.url, proxies):
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        # A connection is reused only under the TLS settings it was opened with: one pool per origin and
        # (verify, cert), as requests' own pools are keyed.
        key = (_origin(request.url), verify, cert)
        pool = self._pools.get(key)
        if pool is None or pool.closed:  # not yet asked for, or closed since
            if len(self._pools) >= _MAX_REMEMBERED:
                for forgotten in self._pools.values():
                    forgotten.close()
                self._pools.clear()
            pool = self._pools[key] = Pool(key[0], self._pool_maxsize)
        return pool

    def request_url(self, request, proxies) -> str:
        """The path and query of a direct request, without requests' two parses of the URL."""
        if proxies and select_proxy(request.url, proxies):
            return super().request_url(request, proxies)
        rest = request.url.partition("://")[2]
        start = min(i for i in (rest.find("/"), rest.find("?"), len(rest)) if i >= 0)
        path = rest[start:]
        return path if path.startswith("/") else "/" + path

    def build_response(self, req, resp) -> Response:
        """requests' response, without what providers' answers never need and every call paid for: a
        case-insensitive copy of the headers (the pool's are case-insensitive already, and a stream's
        response keeps them for minutes) and a search for cookies to store."""
        response = Response()
        response.status_code = resp.status
        response.headers = resp.headers
        response.encoding = get_encoding_from_headers(resp.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url
        response.request = req
        response.connection = self
        return response

    def close(self) -> None:
        """Close every pool, so that no connection is reused after it."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        super().close()


def _origin(url: str) -> str:
    """ "scheme://host:port" of a URL ("https://api.openai.com/v1/chat" -> "https://api.openai.com")."""
    scheme, _, rest = url.partition("://")
    return scheme.lower() + "://" + rest.split("/", 1)[0].split("?", 1)[0].lower()
