"""Shared fixtures: isolated data dir, fresh databases (SQLite and a real PostgreSQL), embeddings."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib.core.db import make_engine, migrate  # noqa: E402

WORKBENCH_VARS = (
    "OPENAI_API_KEY",
    "WORKBENCH_PROVIDERS",
    "DATABASE_URL",
    "CHROMA_HOST",
    "CHROMA_PORT",
    "WORKBENCH_DEFAULT_MODEL",
    "WORKBENCH_FALLBACKS",
    "WORKBENCH_LOG_CONTENT",
    "WORKBENCH_DEMO",
    "WORKBENCH_USER",
    "WORKBENCH_QUEUE_URL",
    "WORKBENCH_APP_WORKERS",
)


def pytest_configure(config):
    config.addinivalue_line("markers", "chroma_server: runs against the Chroma server started by the test set-up")


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    """Every test gets its own data dir and no configured providers, keys or database URL."""
    for var in WORKBENCH_VARS:
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "data"
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WORKBENCH_PRELOAD_EMBEDDINGS", "0")  # tests load the model only when they use it
    return path


@pytest.fixture(autouse=True)
def _stop_queue_workers():
    """Embedded queue workers a test started (directly or through the app) stop with it."""
    yield
    queue = sys.modules.get("lib.jobs.queue")
    if queue is not None:
        queue.stop_embedded(graceful=False)


@pytest.fixture
def fresh_engine():
    """A migrated in-memory SQLite database."""
    engine = make_engine("sqlite://")
    migrate(engine)
    yield engine
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on 127.0.0.1 for the session; yields an admin URL template."""
    bindir = _pg_bin()
    if bindir is None:
        reason = "PostgreSQL is not installed (make test installs it with apt-get)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="wb-pg-"))
    datadir, port = root / "data", _free_port()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres")
        root.chmod(0o755)
    subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [
            *prefix,
            str(bindir / "postgres"),
            "-D",
            str(datadir),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(root),
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("PostgreSQL did not start")
            time.sleep(0.1)  # polling a server that is starting, not pacing a test
    import psycopg

    for _ in range(100):
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres").close()
            break
        except psycopg.OperationalError:
            time.sleep(0.1)
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{{db}}"
    proc.terminate()
    proc.wait(timeout=20)
    shutil.rmtree(root, ignore_errors=True)


_db_counter = iter(range(1, 10**6))


@pytest.fixture
def pg_url(postgres_server) -> str:
    """A URL to a brand-new, empty PostgreSQL database."""
    import psycopg

    name = f"wb_test_{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(postgres_server.format(db="postgres").replace("+psycopg", ""), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.format(db=name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_engine(request, tmp_path):
    """A migrated engine on a SQLite file, then on a real PostgreSQL database."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
    else:
        engine = make_engine(request.getfixturevalue("pg_url"))
    migrate(engine)
    yield engine
    engine.dispose()


@functools.lru_cache(maxsize=1)
def _local_embeddings():
    from lib.documents.embeddings import make_local_embeddings

    return make_local_embeddings()


@pytest.fixture(scope="session")
def local_embeddings():
    """The real bundled MiniLM model, loaded once per test session."""
    return _local_embeddings()


@pytest.fixture(scope="module")
def server():
    """A loopback OpenAI-compatible server (tests/fake_openai.py) for a test module."""
    from fake_openai import FakeOpenAI

    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def fake(server):
    """The module's loopback server, with an empty queue and no recorded requests."""
    server.reset()
    return server


def _chroma_heartbeat(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def chroma_server():
    """`chroma run` from the venv on a free 127.0.0.1 port with a temporary path; yields (host, port).

    Fails in CI (CI set) and skips locally when the server cannot start.
    """

    def give_up(reason: str):
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)

    chroma = Path(sys.executable).parent / "chroma"
    if not chroma.exists():
        give_up(f"{chroma} is missing (chromadb's server comes with requirements.txt)")
    root = Path(tempfile.mkdtemp(prefix="wb-chroma-"))
    port = _free_port()
    log = open(root / "chroma.log", "w")  # noqa: SIM115 - the server writes it until it stops
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not _chroma_heartbeat(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            give_up("the Chroma server did not start: " + (root / "chroma.log").read_text()[-2000:])
        time.sleep(0.1)  # polling a server that is starting, not pacing a test
    yield "127.0.0.1", port
    from browser import stop_process

    stop_process(proc, timeout=20)
    log.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    """`redis-server` (the Debian package; `make test` installs it) on a free 127.0.0.1 port; yields its URL.

    Fails in CI (CI set) and skips locally when it is missing. Nothing is persisted.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (make test installs it with apt-get)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    root, port = Path(tempfile.mkdtemp(prefix="wb-redis-")), _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    import redis

    client, deadline = redis.Redis(host="127.0.0.1", port=port), time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)  # polling a server that is starting, not pacing a test
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=20)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def prometheus_server():
    """Debian's /usr/bin/prometheus (`make test` installs it) on a free 127.0.0.1 port, scraping every second the
    ports a test names with `.scrape(port, ...)`; a temporary storage dir. Yields a tests/prometheus_server.py
    PrometheusServer. Fails in CI (CI set) and skips locally when it is missing.
    """
    from prometheus_server import PrometheusServer

    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.path.exists(binary):
        reason = "prometheus is not installed (make test installs it with apt-get)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="wb-prometheus-"))
    server = PrometheusServer(binary, root, _free_port()).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.chroma_server)])
def any_chroma(request, monkeypatch) -> str:
    """The vector store a test's settings point at: the embedded PersistentClient, then a Chroma server.

    In "server" mode CHROMA_HOST/CHROMA_PORT point at the session's `chroma_server` (subprocesses started
    by the test inherit them). Collection names carry a timestamp (lib.documents.indexing.create_collection), so tests
    sharing the server never clash.
    """
    if request.param == "server":
        host, port = request.getfixturevalue("chroma_server")
        monkeypatch.setenv("CHROMA_HOST", host)
        monkeypatch.setenv("CHROMA_PORT", str(port))
    return request.param
