"""A real Prometheus server (Debian's /usr/bin/prometheus) for tests: scrapes given 127.0.0.1 ports every second.

Targets come from a file_sd file, so one server serves a whole session and each test points it at its own ports.
Figures are read back through the HTTP query API, after a scrape that started once the test's calls were done.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from waiting import wait_for

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: workbench
    file_sd_configs:
      - files: [targets.json]
        refresh_interval: 1s
"""


class PrometheusServer:
    """/usr/bin/prometheus on 127.0.0.1:`port` with its storage and config in `root`."""

    def __init__(self, binary: str, root: Path, port: int):
        self.binary, self.root, self.port = binary, root, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> PrometheusServer:
        """Start the server and wait until it is ready; RuntimeError with its log if it does not start."""
        (self.root / "prometheus.yml").write_text(CONFIG)
        self.scrape()
        self._log = open(self.root / "prometheus.log", "w")  # noqa: SIM115 - the server writes it until it stops
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.root / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait_for(lambda: self._ready() or self.proc.poll() is not None, timeout, step=0.1) or not self._ready():
            self.stop()
            raise RuntimeError("prometheus did not start: " + (self.root / "prometheus.log").read_text()[-2000:])
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._log.close()

    def scrape(self, *ports: int) -> None:
        """Scrape these 127.0.0.1 ports from now on (and no others)."""
        targets = [{"targets": [f"127.0.0.1:{p}" for p in ports], "labels": {}}] if ports else []
        tmp = self.root / "targets.json.tmp"
        tmp.write_text(json.dumps(targets))
        tmp.replace(self.root / "targets.json")  # atomic: the file watcher never reads half a file

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` now: [{"metric": {...}, "value": [ts, "v"]}, ...]."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        return body["data"]["result"]

    def figures(self, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        """`expr`'s samples as {(label values...): value}."""
        return {tuple(s["metric"].get(k, "") for k in labels): float(s["value"][1]) for s in self.query(expr)}

    def wait_for_scrape(self, *ports: int, after: float | None = None, timeout: float = 30) -> None:
        """Wait until each port has been scraped (and found up) by a scrape that started after `after` (now).

        `up` is stored in the same commit as the scrape's samples, so once its timestamp is past `after`, every
        figure the scraped process had then is queryable.
        """
        after = time.time() if after is None else after
        want = {f"127.0.0.1:{p}" for p in ports}

        def scraped() -> bool:
            seen = {s["metric"]["instance"]: s for s in self.query('timestamp(up{job="workbench"} == 1)')}
            found = {i: float(s["value"][1]) for i, s in seen.items() if i in want}
            return set(found) == want and all(ts > after for ts in found.values())

        if not wait_for(scraped, timeout, step=0.2):
            raise AssertionError(f"Prometheus did not scrape {sorted(want)} after {after}: {self.query('up')}")
