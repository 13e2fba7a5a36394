"""The soak's verdict in bench/report.py judges memory on PSS: RSS summed over the master and its workers
counts every shared page once per process."""

from __future__ import annotations

import pytest

from bench import report


def _soak(pss: list[float], rss: float = 450.0, errors: int = 0) -> dict:
    samples = [{"t_s": 10.0 * i, "rss_mb": rss, "pss_mb": mb, "processes": 3} for i, mb in enumerate(pss)]
    memory = report.memory_summary(None, samples[:-1], samples[-1])
    return {"soak": {"gateway": {"memory": memory, "requests_per_sec": 385.0, "errors": errors}}}


@pytest.mark.parametrize(
    "pss, errors, verdict",
    [
        ([195.0, 198.0, 199.0, 200.0], 0, "targets met"),  # RSS summed is 450 MB: not what is judged
        ([195.0, 198.0, 255.0, 200.0], 0, "TARGETS NOT MET"),  # a peak over 250 MB
        ([180.0, 190.0, 200.0, 210.0], 0, "TARGETS NOT MET"),  # +10.5 % from the first interval
        ([195.0, 198.0, 199.0, 200.0], 1, "TARGETS NOT MET"),
    ],
)
def test_the_soak_is_judged_on_pss(pss, errors, verdict):
    line = report.soak(_soak(pss, errors=errors), 10).splitlines()[-1]
    assert line.endswith(verdict) and "RSS summed 450 → 450 MB" in line
