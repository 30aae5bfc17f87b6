"""torchrun's variables left in a plain process never make fit hang (issue 24).

A process that finds RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT waits for the other ranks at most
SKCARL_RENDEZVOUS_TIMEOUT seconds, then raises an error that names the variables and distributed=False. Each case
runs in a subprocess under a hard timeout, so that a regression fails the test instead of hanging the suite.
"""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from skcarl import _ddp

ROOT = Path(__file__).resolve().parents[1]
HARD_TIMEOUT_S = 240

SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from conftest import synthetic_affect
    from skcarl import CARLEmbedder
    X, VA = synthetic_affect(16)
    started = time.perf_counter()
    try:
        CARLEmbedder({backbone!r}, max_epochs=1, batch_size=8, queue_size=0, device="cpu",
                     distributed={distributed!r}).fit(X, VA)
        print("FITTED")
    except Exception as exc:
        print("ERROR", type(exc).__name__, isinstance(exc, (TimeoutError, RuntimeError)), exc)
    print("SECONDS", time.perf_counter() - started)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_fit(tiny_bert, rank, distributed="auto", timeout="2", extra=None):
    env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "PYTHONPATH": str(ROOT), **(extra or {})}
    if timeout is None:
        env.pop(_ddp.RENDEZVOUS_TIMEOUT_VARIABLE, None)
    else:
        env[_ddp.RENDEZVOUS_TIMEOUT_VARIABLE] = timeout
    script = SCRIPT.format(tests=str(ROOT / "tests"), backbone=tiny_bert, distributed=distributed)
    try:
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                timeout=HARD_TIMEOUT_S, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fit hung for {HARD_TIMEOUT_S} s with stale torchrun variables (rank {rank})")
    return result.stdout


@pytest.mark.parametrize("rank", [0, 1], ids=["rank 0 waits for a worker", "rank 1 finds no master"])
def test_stale_torchrun_variables_raise_instead_of_hanging(rank, tiny_bert):
    out = run_fit(tiny_bert, rank)
    assert "ERROR RendezvousError True" in out, out
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "distributed=False", "SKCARL_RENDEZVOUS_TIMEOUT",
                 "within 2 s"):
        assert name in out, (name, out)
    seconds = float(out.split("SECONDS")[1])
    assert seconds < 60, out


def test_distributed_false_ignores_stale_variables(tiny_bert):
    out = run_fit(tiny_bert, 0, distributed=False)
    assert "FITTED" in out, out


def test_the_default_timeout_is_short():
    assert 0 < _ddp.RENDEZVOUS_TIMEOUT_S <= 60


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan", "inf", ""])
def test_a_bad_timeout_variable_is_refused(value, monkeypatch):
    monkeypatch.setenv(_ddp.RENDEZVOUS_TIMEOUT_VARIABLE, value)
    with pytest.raises(ValueError, match=_ddp.RENDEZVOUS_TIMEOUT_VARIABLE):
        _ddp.rendezvous_timeout()


def test_the_timeout_variable_is_read(monkeypatch):
    monkeypatch.delenv(_ddp.RENDEZVOUS_TIMEOUT_VARIABLE, raising=False)
    assert _ddp.rendezvous_timeout() == _ddp.RENDEZVOUS_TIMEOUT_S
    monkeypatch.setenv(_ddp.RENDEZVOUS_TIMEOUT_VARIABLE, "7.5")
    assert _ddp.rendezvous_timeout() == 7.5
