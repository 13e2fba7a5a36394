"""CPU per provider call of the gateway's HTTP client, against requests' stock adapter and a bare socket.

    .venv/bin/python -m bench.transport [--calls 3000] [--rounds 3]

One process, no gevent, against the project's fake provider on loopback: the same chat completion request
(a PreparedRequest built as the gateway builds it) sent and its JSON answer parsed, `--calls` times per
round, the three clients alternated for `--rounds` rounds. CPU time is the process's own (the fake provider
is another process), so what is printed is the client's cost per call, the kernel's share of the socket
calls included. The bare socket (one write, a line-by-line head, a Content-Length body) is the floor.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
from requests.adapters import HTTPAdapter

from bench import processes
from gateway.providers.base import UpstreamRequest, _prepared
from gateway.providers.pool import PooledAdapter

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


def _adapter_call(adapter, upstream: UpstreamRequest):
    def call() -> None:
        response = adapter.send(_prepared(upstream), timeout=(5, 30))
        orjson.loads(response.content)

    return call


def _socket_call(base_url: str):
    host, port = base_url.split("//", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb", 2048)

    def call() -> None:
        body = orjson.dumps(BODY)
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: %b\r\nAuthorization: Bearer bench\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
            % (f"{host}:{port}".encode(), len(body), body)
        )
        reader.readline()
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        orjson.loads(reader.read(length))

    return call


def cpu_per_call(call, calls: int) -> float:
    """Microseconds of this process's CPU per call, after 200 calls of warm-up."""
    for _ in range(200):
        call()
    started = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - started) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        base_url = stack.enter_context(processes.fake_provider(0, logs / "fake.log"))
        upstream = UpstreamRequest(
            f"{base_url}/v1/chat/completions",
            {"Authorization": "Bearer bench", "Content-Type": "application/json"},
            BODY,
        )
        stock, ours = HTTPAdapter(pool_maxsize=4, max_retries=0), PooledAdapter(pool_maxsize=4, max_retries=0)
        stack.callback(stock.close)
        stack.callback(ours.close)
        clients = {
            "requests' HTTPAdapter (urllib3, http.client)": _adapter_call(stock, upstream),
            "the gateway's PooledAdapter (http1)": _adapter_call(ours, upstream),
            "a bare socket": _socket_call(base_url),
        }
        results: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, call in clients.items():
                results[name].append(cpu_per_call(call, args.calls))
    print(f"CPU per provider call, µs ({args.rounds} rounds of {args.calls} calls; median, then each round)")
    for name, figures in results.items():
        rounds = " ".join(f"{figure:.0f}" for figure in figures)
        print(f"  {name:<48} {statistics.median(figures):6.0f}   ({rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
