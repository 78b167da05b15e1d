"""Shared helpers of the metrics tests: scraping over HTTP, checking with promtool, reading labels."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meterd.metrics import MeterdMetrics, MetricsConfig, MetricsServer

#: Loopback, kernel-chosen port: tests never collide on a fixed one.
TEST_CONFIG = MetricsConfig(listen="127.0.0.1", port=0)


def fetch(url: str, accept: str = "") -> tuple[int, str, bytes]:
    """GET ``url`` with a real HTTP client; return status, content type and body."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.headers["Content-Type"], response.read()


def scrape(metrics: MeterdMetrics) -> bytes:
    """Serve ``metrics`` on 127.0.0.1, scrape it once over HTTP and stop; return the body."""

    async def run() -> bytes:
        server = MetricsServer(TEST_CONFIG, metrics)
        await server.start()
        try:
            host, port = server.address
            status, _, body = await asyncio.to_thread(fetch, f"http://{host}:{port}/metrics")
            assert status == 200
            return body
        finally:
            await server.stop()

    return asyncio.run(run())


def promtool_check(body: bytes) -> str:
    """Run ``promtool check metrics`` on a scrape; return its complaints (empty when clean).

    Fails, never skips, when promtool is missing: the check is part of the contract.
    """
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian package prometheus; see scripts/system-deps.sh)")
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return (result.stdout + result.stderr).decode()


def label_values(body: bytes) -> dict[str, set[str]]:
    """Return every label value in a text-format scrape, by label name."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            for name, value in sample.labels.items():
                out.setdefault(name, set()).add(value)
    return out


def sample_value(body: bytes, name: str, **labels: str) -> float:
    """Return the value of one sample of a text-format scrape (fails if absent)."""
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    pytest.fail(f"no sample {name}{labels}")
