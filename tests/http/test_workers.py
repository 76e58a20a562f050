"""`oauth-gateway serve --workers N` (README, "Running several processes"): the parent binds the
port and supervises N forked workers that each build their own context. Both workers serve, a
login works across them, SIGTERM to the parent drains them all (exit 0, no orphan), a crashed
worker is restarted, a crash loop or a configuration error stops everything, and the
combinations that cannot work (the memory:// store, --dev) are refused with one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from config_support import refusal, write_config
from metrics_support import sample
from oidc_support import (
    authorization_params,
    authorize_url,
    bearer,
    complete_authorization,
    exchange,
    redirect_params,
    refresh,
)
from process_support import (
    HTTP_TIMEOUT,
    Deployment,
    GatewayProcess,
    assert_one_line_config_error,
    parent_of,
    process_running,
    run_cli,
    wait_until,
)

from gateway.config import load_settings
from gateway.workers import RESTART_LIMIT, STOP_SIGNALS, run_workers

STOP_DEADLINE = 15.0  # seconds for SIGTERM to end every process: "not hung", with room for load


def sqlite_deployment(deployments: Callable[..., Deployment]) -> Deployment:
    deployment = deployments(store={"url": "sqlite:gateway.db"})  # relative to its directory
    return deployment


def answering_pids(process: GatewayProcess, *, at_least: int = 50, at_most: int = 400,
                   distinct: int = 2) -> set[int]:
    """The pids in /healthz answers, each on a fresh connection (which the kernel hands to
    any worker): `at_least` requests, more until `distinct` pids answered (bounded)."""
    seen: set[int] = set()
    for count in range(1, at_most + 1):
        answer = httpx.get(f"{process.url}/healthz", timeout=HTTP_TIMEOUT)  # a new connection
        assert answer.status_code == 200, answer.text
        seen.add(answer.json()["pid"])
        if count >= at_least and len(seen) >= distinct:
            break
    return seen


# ---------------------------------------------------------------------------------------------
# Real processes


@pytest.mark.slow
def test_two_workers_serve_a_login_and_stop_on_sigterm_without_orphans(
        deployments: Callable[..., Deployment]) -> None:
    deployment = sqlite_deployment(deployments)
    gateway = deployment.start(args=["--workers", "2"])
    workers = answering_pids(gateway)
    assert len(workers) == 2 and gateway.pid not in workers, workers
    if parent_of(gateway.pid) is not None:  # Linux: both are the parent's own children
        assert {parent_of(pid) for pid in workers} == {gateway.pid}

    # A whole login, every request on a new connection: the hops land on either worker and
    # find the login transaction, the session and the code in the shared SQLite file.
    browser = deployment.browser()
    browser.http = httpx.Client(timeout=HTTP_TIMEOUT,
                                limits=httpx.Limits(max_keepalive_connections=0))
    answer = complete_authorization(browser, authorize_url(browser.stack,
                                                           **authorization_params()))
    tokens = exchange(gateway, redirect_params(answer)["code"])
    assert tokens.status_code == 200, tokens.text
    for _ in range(4):  # rotations, each on whichever worker accepts the connection
        tokens = refresh(gateway, tokens.json()["refresh_token"])
        assert tokens.status_code == 200, tokens.text
        userinfo = httpx.get(f"{gateway.url}/userinfo", timeout=HTTP_TIMEOUT,
                             headers=bearer(tokens.json()["access_token"]))
        assert userinfo.status_code == 200, userinfo.text

    stopping = time.monotonic()
    assert gateway.stop() == 0, gateway.output
    assert time.monotonic() - stopping < STOP_DEADLINE
    assert not [pid for pid in workers if process_running(pid)]
    gateway.assert_logged("SIGTERM: stopping 2 workers")


@pytest.mark.slow
def test_a_burst_of_connections_is_shared_by_the_workers(
        deployments: Callable[..., Deployment]) -> None:
    """A pool opening its connections at once (wrk, a proxy) is served by both workers through
    server.SharedSocketHTTPServer (one accept per wake-up), every connection held open. What it
    changes under load, when the first worker awake would take a whole burst while the load
    generator holds the other core, is a matter of scheduling this test cannot force: the
    benchmark shows it (bench/run.py --only workers: 1.05 x one worker before, 1.89 x after)."""
    gateway = sqlite_deployment(deployments).start(args=["--workers", "2"])
    workers = answering_pids(gateway)  # both up
    host, port = gateway.url.removeprefix("http://").split(":")
    # Both workers on one core, as when the load generator holds the other; the whole burst,
    # each connection with its request (as wrk sends them), waits until they wake up.
    for pid in workers:
        os.sched_setaffinity(pid, {min(os.sched_getaffinity(0))})
        os.kill(pid, signal.SIGSTOP)
    try:
        connections = [socket.create_connection((host, int(port)), timeout=HTTP_TIMEOUT)
                       for _ in range(60)]
        for connection in connections:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    pids: list[int] = []
    try:
        for connection in connections:
            answer = b""
            while b"}" not in answer:
                answer += connection.recv(4096)
            pids.append(json.loads(answer.split(b"\r\n\r\n", 1)[1])["pid"])
    finally:
        for connection in connections:
            connection.close()
    counts = sorted(Counter(pids).values())
    assert len(counts) == 2 and counts[0] >= 6, Counter(pids)  # at least 10% each
    assert gateway.stop() == 0, gateway.output


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_a_killed_parent_leaves_no_orphan(
        deployments: Callable[..., Deployment]) -> None:
    deployment = sqlite_deployment(deployments)
    gateway = deployment.start(args=["--workers", "2"])
    first = answering_pids(gateway)
    assert len(first) == 2
    crashed = min(first)
    os.kill(crashed, signal.SIGKILL)
    wait_until(lambda: not process_running(crashed), 5, "the killed worker is gone")
    now = answering_pids(gateway, at_least=20)
    assert len(now) == 2 and crashed not in now, (first, now)  # a new worker took its place
    gateway.assert_logged("killed by SIGKILL; restarting it")

    # The parent killed outright (no SIGTERM to pass on): each worker notices and stops.
    os.kill(gateway.pid, signal.SIGKILL)
    # Polled, with room for a busy machine: an orphan that never checks would never stop.
    wait_until(lambda: not any(process_running(pid) for pid in now), 30,
               "workers of a killed parent stop")
    gateway.assert_logged("is gone: stopping")


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive ports free on loopback now (bounded tries)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count - 1 > 65535:
            continue
        held = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise AssertionError(f"no {count} consecutive free ports")


@pytest.mark.slow
def test_each_worker_serves_its_own_metrics_on_its_admin_port(
        deployments: Callable[..., Deployment]) -> None:
    """With --workers 2, worker i's admin listener is on admin.port + i; scraping both sees
    every request, each counted once, by the worker that answered it."""
    admin_port = consecutive_free_ports(2)
    gateway = sqlite_deployment(deployments).start(
        args=["--workers", "2"],
        env={"GATEWAY_ADMIN__ENABLED": "true", "GATEWAY_ADMIN__PORT": str(admin_port)})
    for worker in (0, 1):
        gateway.assert_logged(f"admin listener (/metrics) of worker {worker} on "
                              f"127.0.0.1:{admin_port + worker}")
    served: Counter[int] = Counter()
    while len(served) < 2 or sum(served.values()) < 40:  # each on a new connection
        answer = httpx.get(f"{gateway.url}/healthz", timeout=HTTP_TIMEOUT)
        assert answer.status_code == 200, answer.text
        served[answer.json()["pid"]] += 1
        assert sum(served.values()) <= 400, f"one worker answered everything: {served}"

    counted = []
    for port in (admin_port, admin_port + 1):
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=HTTP_TIMEOUT)
        assert metrics.status_code == 200, metrics.text
        counted.append(int(sample(metrics.text, "gateway_http_requests_total",
                                  route="/healthz", method="GET", status="200")))
    assert sorted(counted) == sorted(served.values()), (counted, served)
    assert all(counted)
    assert gateway.stop() == 0, gateway.output


def test_admin_ports_of_the_workers_must_fit_and_miss_the_listen_port(tmp_path: Path) -> None:
    error = refusal(write_config(tmp_path, {"listen.workers": 4, "admin.port": 65534}))
    assert error.key == "admin.port" and "at most 65532" in str(error)
    error = refusal(write_config(tmp_path, {"listen.workers": 4, "listen.port": 9092,
                                            "admin.port": 9090}))
    assert error.key == "admin.port" and "include listen.port 9092" in str(error)
    fine = {"listen.workers": 4, "listen.port": 9094, "admin.port": 9090}
    assert load_settings(write_config(tmp_path, fine), {}).admin.port == 9090


# ---------------------------------------------------------------------------------------------
# What is refused, with one line (exit status 2)


def test_workers_with_the_memory_store_are_refused_with_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"store.url": "memory://", "listen.port": 0})
    result = run_cli("serve", "--config", str(config), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert_one_line_config_error(result.stderr, "listen.workers")
    assert "memory://" in result.stderr and "not be shared" in result.stderr


def test_workers_with_dev_mode_are_refused_with_one_line(tmp_path: Path) -> None:
    env = {"GATEWAY_DEV__STATE_DIR": str(tmp_path / "state"), "GATEWAY_LISTEN__PORT": "0",
           "GATEWAY_DEV__PROVIDER_PORT": "0"}
    for args, extra in ((["--workers", "2"], {}), ([], {"GATEWAY_LISTEN__WORKERS": "3"})):
        result = run_cli("serve", "--dev", *args, cwd=tmp_path, env={**env, **extra})
        assert result.returncode == 2, result.stderr
        assert_one_line_config_error(result.stderr, "listen.workers")
        assert "development mode" in result.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was generated


def test_config_check_refuses_several_workers_on_the_memory_store(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"store.url": "memory://", "listen.workers": 4})
    result = run_cli("config", "check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert_one_line_config_error(result.stderr, "listen.workers")


@pytest.mark.parametrize("workers", [0, -1, 257])
def test_worker_count_out_of_range_is_refused_naming_the_key(tmp_path: Path,
                                                             workers: int) -> None:
    error = refusal(write_config(tmp_path, {"listen.workers": workers}))
    assert error.key == "listen.workers" and "between 1 and 256" in str(error)


def test_workers_flag_must_be_a_positive_number(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"store.url": "memory://"})
    for value in ("0", "two"):
        result = run_cli("serve", "--config", str(config), "--workers", value, cwd=tmp_path)
        assert result.returncode == 2
        assert "argument --workers" in result.stderr and "Traceback" not in result.stderr


def test_workers_come_from_the_file_the_environment_and_the_command_line(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, {"listen.workers": 3})  # default store: SQLite
    assert load_settings(config, {}).listen.workers == 3
    environment = {"GATEWAY_LISTEN__WORKERS": "5"}
    assert load_settings(config, environment).listen.workers == 5
    command_line = {"listen": {"workers": 2}}  # `serve --workers 2` wins over both
    assert load_settings(config, environment, overrides=command_line).listen.workers == 2
    assert load_settings(write_config(tmp_path), {}).listen.workers == 1  # the default


def test_workers_without_a_signing_key_are_refused_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"listen.port": 0, "tokens.keys_dir": str(tmp_path / "none"),
                                     "store.url": "sqlite:gateway.db"})
    result = run_cli("serve", "--config", str(config), "--workers", "3", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert_one_line_config_error("\n".join(errors), "tokens.keys_dir")
    assert "started" not in result.stderr  # checked in the parent: no worker was forked


def test_a_worker_configuration_error_stops_everything_with_exit_2(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert run_cli("keys", "generate", "--dir", str(keys), "--algorithm", "ES256",
                   cwd=tmp_path).returncode == 0
    config = write_config(tmp_path, {"listen.port": 0, "tokens.keys_dir": str(keys),
                                     "tokens.algorithm": "ES256", "admin.enabled": False,
                                     "store.url": f"sqlite://{tmp_path}/missing/gateway.db"})
    started = time.monotonic()
    result = run_cli("serve", "--config", str(config), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 20  # no restart loop
    errors = [line for line in result.stderr.splitlines() if "configuration error:" in line]
    assert errors and all(line.startswith("oauth-gateway: configuration error: store.url: ")
                          for line in errors), result.stderr
    assert "restarting" not in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# The supervisor's policy, with trivial workers forked from this process


def _count_runs(marker: Path) -> int:
    """How many times a worker ran before (a file per run: forked workers share no memory)."""
    runs = len(list(marker.parent.glob(marker.name + "*")))
    (marker.parent / f"{marker.name}{runs}").touch()
    return runs


def test_a_worker_that_crashes_once_is_restarted(tmp_path: Path) -> None:
    marker = tmp_path / "run"
    status = run_workers(1, lambda index: 3 if _count_runs(marker) == 0 else 0)
    assert status == 0
    assert len(list(tmp_path.glob("run*"))) == 2


def test_a_crash_loop_stops_after_the_restart_limit(tmp_path: Path) -> None:
    def life(index: int) -> int:
        _count_runs(tmp_path / "run")
        return 1

    assert run_workers(1, life) == 1
    assert len(list(tmp_path.glob("run*"))) == RESTART_LIMIT + 1


def test_a_configuration_error_in_a_worker_is_not_retried_and_stops_the_others(
        tmp_path: Path) -> None:
    def life(index: int) -> int:
        _count_runs(tmp_path / f"worker{index}-")
        if index == 0:
            return 2
        # A worker that serves until told to stop, as `serve` does.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        time.sleep(30)
        return 0

    started = time.monotonic()
    assert run_workers(2, life) == 2
    assert time.monotonic() - started < 10
    assert len(list(tmp_path.glob("worker0-*"))) == 1  # not restarted
