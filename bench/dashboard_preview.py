"""A preview of the Grafana dashboard (``deploy/grafana/seekport.json``) drawn from real data:
``docs/dashboard.png``.

Method
------
* The chaos upstream (two models, some latency and a few errors), ``seekport serve`` with the
  response cache on and prices for one model, and a real Prometheus scraping it every second
  with ``deploy/prometheus/rules.yml`` loaded.
* Four clients for ``--seconds`` (default 90): new questions, repeated ones (cache hits), and
  a minute in which the upstream fails one call in five.
* Each panel's queries, as the dashboard has them (``$__rate_interval`` → 15s, the variables →
  all), asked of Prometheus over the run (``query_range``, 2 s steps) and drawn with matplotlib
  in the dashboard's grid. Not Grafana's rendering: its queries, on a real Prometheus.

Needs Debian's ``prometheus`` and matplotlib (the ``[bench]`` extra).
Run: ``.venv/bin/python bench/dashboard_preview.py [--seconds 90]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from tests.harness import (  # noqa: E402
    Server,
    run_chaos,
    run_prometheus,
    run_server,
    write_config,
)

DASHBOARD = REPO / "deploy" / "grafana" / "seekport.json"
OUT = REPO / "docs" / "dashboard.png"
CONCRETE = {"$__rate_interval": "15s", "$job": ".*", "$instance": ".*", "$route": ".*"}


def traffic(server: Server, until: float, seed: int) -> None:
    rng = random.Random(seed)
    auth = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < until:
            model = rng.choice(["deepseek-chat", "deepseek-chat", "deepseek-reasoner"])
            repeated = rng.random() < 0.4
            text = f"question {rng.randrange(5) if repeated else rng.random()}"
            body = {
                "model": model,
                "messages": [{"role": "user", "content": text}],
                "temperature": 0,
                "max_tokens": 16,
                "stream": rng.random() < 0.5,
            }
            client.post(server.url + "/v1/chat/completions", json=body, headers=auth)


def viewer(server: Server) -> str:
    made = httpx.post(
        server.url + "/admin/keys",
        json={"name": "prometheus", "role": "viewer"},
        headers={"Authorization": f"Bearer {server.key}"},
    )
    return str(made.json()["secret"])


def series(prom: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    for name, value in CONCRETE.items():
        expr = expr.replace(name, value)
    r = httpx.get(
        prom + "/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": 2},
        timeout=30,
    ).json()
    if r["status"] != "success":
        raise RuntimeError(f"{expr}: {r}")
    result: list[dict[str, Any]] = r["data"]["result"]
    return result


def legend(template: str, labels: dict[str, str]) -> str:
    out = template
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return out


def draw(prom: str, start: float, end: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) // 8
    fig, axes = plt.subplots(rows, 2, figsize=(16, 3.2 * rows), squeeze=False)
    for p in panels:
        g = p["gridPos"]
        ax = axes[g["y"] // 8][g["x"] // 12]
        for t in p["targets"]:
            for s in series(prom, t["expr"], start, end):
                xs = [float(v[0]) - start for v in s["values"]]
                ys = [float(v[1]) for v in s["values"]]
                ax.plot(xs, ys, label=legend(t["legendFormat"], s["metric"])[:40])
        ax.set_title(p["title"], fontsize=10)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.lines:
            ax.legend(fontsize=6, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data in this run", ha="center", va="center", fontsize=8)
    fig.suptitle(
        f"{dashboard['title']}: the dashboard's queries on a real Prometheus "
        "(bench/dashboard_preview.py)",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(out, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d, run_chaos(Path(d)) as upstream:
        upstream.control(latency_ms=40, jitter_ms=200)
        models = [
            {"name": n, "backend": "openai", "base_url": upstream.url, "upstream_model": n}
            for n in ("deepseek-chat", "deepseek-reasoner")
        ]
        pricing = {
            "models": [
                {
                    "model": "deepseek-chat",
                    "input_cache_hit": 0.07,
                    "input_cache_miss": 0.27,
                    "output": 1.10,
                }
            ]
        }
        config = write_config(
            Path(d), models, log_level="warning", cache={"enabled": True}, pricing=pricing
        )
        with (
            run_server(config) as server,
            run_prometheus(
                Path(d), server.port, viewer(server), REPO / "deploy/prometheus/rules.yml"
            ) as prom,
        ):
            start = time.time()
            until = time.monotonic() + args.seconds
            workers = [threading.Thread(target=traffic, args=(server, until, i)) for i in range(4)]
            for w in workers:
                w.start()
            time.sleep(args.seconds / 3)
            upstream.control(error_rate=0.2)
            time.sleep(args.seconds / 3)
            upstream.control(error_rate=0.0)
            for w in workers:
                w.join()
            time.sleep(3)  # the last scrape
            draw(prom, start, time.time(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
