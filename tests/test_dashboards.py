"""The Grafana dashboard against the metric table (fast, no cluster). That the exporter really serves
every series a panel queries is tests/cluster/test_prometheus.py's check, on a real cluster."""

import importlib.util
import json
import re
from pathlib import Path

from ray_ser.metrics import METRICS, exported_series

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "dashboards" / "ray_ser.json"


def _build_module():
    spec = importlib.util.spec_from_file_location("dashboards_build", REPO / "dashboards" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _queries() -> dict[str, list[str]]:
    """panel title -> its query expressions."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"] if p["type"] != "row"}


def test_the_dashboard_is_what_its_generator_writes():
    assert DASHBOARD.read_text() == _build_module().render(), "run: python dashboards/build.py"


def test_every_ray_ser_series_a_panel_queries_is_defined_in_the_metric_table():
    defined = {series for name in METRICS for series in exported_series(name)}
    queried = {name for exprs in _queries().values() for e in exprs for name in re.findall(r"\bray_ser_\w+", e)}
    assert queried and queried <= defined, queried - defined


def test_every_application_metric_has_a_panel_but_the_serve_helpers():
    queried = " ".join(e for exprs in _queries().values() for e in exprs)
    # ser_serve_* is recorded by the Serve app once it calls metrics.record_request; until then the
    # panels read Ray Serve's own series, and a panel on a series nobody exports would be a defect.
    shown = {name for name in METRICS if any(s in queried for s in exported_series(name))}
    assert shown == {name for name in METRICS if not name.startswith("ser_serve_")}


def test_the_panels_the_issue_asks_for():
    titles = " | ".join(_queries())
    for needed in ("Label distribution", "Agreement", "Training loss", "macro-F1", "Serve request latency"):
        assert needed in titles, needed
    serve = [e for title, exprs in _queries().items() if title.startswith("Serve") for e in exprs]
    assert serve and all("ray_serve_" in e for e in serve)
