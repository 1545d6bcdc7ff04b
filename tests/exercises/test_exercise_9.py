"""Exercise 9, FIFO against LIFO latency under -c400: docs/exercises/latency.py's
parse_wrk() reads wrk's report right (a known one, every unit), and the script measures
both policies for real (1 s of wrk -t2 -c400 each; its numbers are not judged, they are
noise on a shared machine, only read back from wrk's own report)."""

import importlib.util
import re
import shutil

import pytest
from exhelp import EXERCISES

SAMPLE = """Running 1s test @ http://127.0.0.1:3094/index.html
  2 threads and 400 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    35.20ms  120.41ms   1.52s    97.10%
    Req/Sec    44.12k     3.21k   50.11k    70.00%
  Latency Distribution
     50%  850.00us
     75%    5.01ms
     90%    6.20ms
     99%    1.20s
  87654 requests in 1.00s, 600.00MB read
Requests/sec:  87654.32
Transfer/sec:    600.00MB
"""


def load():
    spec = importlib.util.spec_from_file_location("latency", EXERCISES / "latency.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ms(value):
    """The check's own reading of one wrk figure."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def test_parse_a_known_report():
    r = load().parse_wrk(SAMPLE)
    assert r["p50"] == pytest.approx(0.85)
    assert r["p99"] == pytest.approx(1200.0)
    assert r["max"] == pytest.approx(1520.0)
    assert r["rps"] == pytest.approx(87654.32)


@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed")
@pytest.mark.parametrize("policy", ["fifo", "lifo"])
def test_measure(policy):
    r, raw = load().measure(policy, seconds=1)
    dist = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", raw, re.M))
    lat = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", raw, re.M).group(1)
    assert r["p50"] == pytest.approx(ms(dist["50"]))
    assert r["p99"] == pytest.approx(ms(dist["99"]))
    assert r["max"] == pytest.approx(ms(lat))
    assert r["p50"] <= r["p99"] <= r["max"] and r["rps"] > 0
