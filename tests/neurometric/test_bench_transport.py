"""bench/transport.py runs end to end: the fake provider started, the three clients measured and printed."""

from bench import transport


def test_the_transport_benchmark_prints_each_client(capsys):
    assert transport.main(["--calls", "20", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for client in ("requests' HTTPAdapter", "the gateway's PooledAdapter", "a bare socket"):
        line = next(line for line in out.splitlines() if client in line)
        assert float(line.split()[-2]) > 0  # the median, µs
