"""Writes dashboards/ray_ser.json, the Grafana dashboard of a ray_ser cluster:

    python dashboards/build.py

Panels query the series ray_ser/metrics.py defines (Ray exports ``ser_rows`` as
``ray_ser_rows_total``) and Ray Serve's own ``ray_serve_*`` series. tests/test_dashboards.py checks
that the JSON is this script's output and that every name is defined; tests/cluster/test_prometheus.py
checks that a real cluster's exporter serves every series each panel queries.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "ray_ser.json"
APP = 'application="ray_ser"'  # the Serve application `ray-ser serve` deploys

# (row title, [(panel title, unit, [(expr, legend)])]); two panels per row of the grid.
ROWS = [
    ("Labeling", [
        ("Rows per second by stage and status", "rows/s", [
            ("sum by (stage, status) (rate(ray_ser_rows_total[1m]))", "{{stage}} {{status}}")]),
        ("Error fraction by stage", "percentunit", [
            ('sum by (stage) (rate(ray_ser_rows_total{status="error"}[5m])) '
             "/ sum by (stage) (rate(ray_ser_rows_total[5m]))", "{{stage}}")]),
        ("Error rows per second by stage and kind (transient, permanent)", "rows/s", [
            ("sum by (stage, kind) (rate(ray_ser_row_errors_total[5m]))", "{{stage}} {{kind}}")]),
        ("Throughput: audio-seconds per second by stage", "none", [
            ("sum by (stage) (rate(ray_ser_audio_seconds_total[1m]))", "{{stage}}")]),
        ("Batch latency p50 / p95 by stage", "s", [
            ("histogram_quantile(0.95, sum by (stage, le) (rate(ray_ser_batch_seconds_bucket[5m])))", "p95 {{stage}}"),
            ("histogram_quantile(0.5, sum by (stage, le) (rate(ray_ser_batch_seconds_bucket[5m])))", "p50 {{stage}}")]),
        ("Parquet written: files/s and bytes/s", "none", [
            ("sum(rate(ray_ser_sink_files_total[5m]))", "files/s"),
            ("sum(rate(ray_ser_sink_bytes_total[5m]))", "bytes/s")]),
    ]),
    ("The vote: label distribution and agreement drift", [
        ("Label distribution (share of labelled rows, 15 min)", "percentunit", [
            ("sum by (label) (rate(ray_ser_vote_labels_total[15m])) "
             "/ ignoring(label) group_left sum(rate(ray_ser_vote_labels_total[15m]))", "{{label}}")]),
        ("Agreement: mean, and share of rows at or below 0.5 (15 min)", "percentunit", [
            ("sum(rate(ray_ser_vote_agreement_sum[15m])) / sum(rate(ray_ser_vote_agreement_count[15m]))",
             "mean agreement"),
            ('sum(rate(ray_ser_vote_agreement_bucket{le="0.5"}[15m])) '
             "/ sum(rate(ray_ser_vote_agreement_count[15m]))", "agreement <= 0.5")]),
    ]),
    ("Training curves (per branch, last epoch)", [
        ("Training loss by branch", "none", [
            ("max by (branch) (ray_ser_train_loss)", "{{branch}}")]),
        ("Validation macro-F1 and UAR by branch", "percentunit", [
            ("max by (branch) (ray_ser_train_val_macro_f1)", "macro-F1 {{branch}}"),
            ("max by (branch) (ray_ser_train_val_uar)", "UAR {{branch}}")]),
        ("Epoch by branch", "none", [
            ("max by (branch) (ray_ser_train_epoch) + 1", "{{branch}}")]),
    ]),
    ("Serve (Ray Serve's own series)", [
        ("Serve request latency p50 / p95", "ms", [
            (f"histogram_quantile(0.95, sum by (le) (rate(ray_serve_http_request_latency_ms_bucket{{{APP}}}[5m])))",
             "p95"),
            (f"histogram_quantile(0.5, sum by (le) (rate(ray_serve_http_request_latency_ms_bucket{{{APP}}}[5m])))",
             "p50")]),
        ("Serve requests per second by HTTP status", "reqps", [
            (f"sum by (status_code) (rate(ray_serve_num_http_requests_total{{{APP}}}[5m]))", "{{status_code}}")]),
        ("Serve replica processing latency p95", "ms", [
            ('histogram_quantile(0.95, sum by (le) (rate(ray_serve_deployment_processing_latency_ms_bucket'
             '{deployment="ray_ser"}[5m])))', "p95")]),
    ]),
]


def dashboard() -> dict:
    panels, y, ident = [], 0, 1
    for row_title, row_panels in ROWS:
        panels.append({"id": ident, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        ident, y = ident + 1, y + 1
        for index, (title, unit, queries) in enumerate(row_panels):
            panels.append({
                "id": ident, "type": "timeseries", "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": y + 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
                            for i, (expr, legend) in enumerate(queries)],
            })
            ident += 1
        y += 8 * ((len(row_panels) + 1) // 2)
    return {
        "title": "ray_ser", "uid": "ray-ser", "schemaVersion": 39, "version": 2, "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"}, "tags": ["ray_ser", "ray"],
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
