"""An OTLP/HTTP metrics receiver for tests/it/formats.rs, on 127.0.0.1.

Every POST to /v1/metrics is parsed by the OpenTelemetry project's own
protobuf definitions (PyPI opentelemetry-proto) with protobuf's JSON parser,
unknown fields refused, then checked against the OTLP data model rules
procship promises: one resource with host.name per batch (a request of a
backlog joined by the drain carries several, all of one host), each metric exactly one of
gauge or sum, sums cumulative and monotonic with 0 < start <= time, every
data point carrying the host attribute. A good request gets 200 and {}; a
bad one 400 with the reason. One JSON line per request goes to stdout.
"""

import gzip
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality


def check(req):
    """Returns (host, metrics, data points); raises ValueError on a broken rule."""
    if not req.resource_metrics:
        raise ValueError("no ResourceMetrics")
    hosts = set()
    metrics = points = 0
    for rm in req.resource_metrics:
        host, m, p = check_resource(rm)
        hosts.add(host)
        metrics, points = metrics + m, points + p
    if len(hosts) != 1:
        raise ValueError(f"one request, several hosts: {sorted(hosts)}")
    return hosts.pop(), metrics, points


def check_resource(rm):
    """One batch's ResourceMetrics: (host, metrics, data points)."""
    attrs = {a.key: a.value.string_value for a in rm.resource.attributes}
    host = attrs.get("host.name")
    if not host:
        raise ValueError("resource without host.name")
    metrics = points = 0
    for sm in rm.scope_metrics:
        if sm.scope.name != "procship" or not sm.scope.version:
            raise ValueError(f"unexpected scope {sm.scope}")
        names = set()
        for m in sm.metrics:
            metrics += 1
            if m.name in names:
                raise ValueError(f"metric {m.name} twice in one scope")
            names.add(m.name)
            kind = m.WhichOneof("data")
            if kind == "sum":
                if m.sum.aggregation_temporality != AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE:
                    raise ValueError(f"{m.name}: sum not cumulative")
                if not m.sum.is_monotonic:
                    raise ValueError(f"{m.name}: sum not monotonic")
                dps = m.sum.data_points
            elif kind == "gauge":
                dps = m.gauge.data_points
            else:
                raise ValueError(f"{m.name}: unexpected kind {kind}")
            if not dps:
                raise ValueError(f"{m.name}: no data points")
            for dp in dps:
                points += 1
                if dp.time_unix_nano == 0:
                    raise ValueError(f"{m.name}: data point without time")
                if kind == "sum" and not 0 < dp.start_time_unix_nano <= dp.time_unix_nano:
                    raise ValueError(f"{m.name}: start {dp.start_time_unix_nano} vs time {dp.time_unix_nano}")
                if kind == "gauge" and dp.start_time_unix_nano != 0:
                    raise ValueError(f"{m.name}: gauge with a start time")
                if dp.WhichOneof("value") is None:
                    raise ValueError(f"{m.name}: data point without value")
                dattrs = {a.key: a.value.string_value for a in dp.attributes}
                if dattrs.get("host") != host:
                    raise ValueError(f"{m.name}: host attribute {dattrs.get('host')!r} != {host!r}")
    return host, metrics, points


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            if self.path != "/v1/metrics":
                raise ValueError(f"path {self.path}")
            if self.headers.get("Content-Type") != "application/json":
                raise ValueError(f"Content-Type {self.headers.get('Content-Type')}")
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            req = json_format.Parse(body.decode("utf-8"), ExportMetricsServiceRequest(),
                                    ignore_unknown_fields=False)
            host, metrics, points = check(req)
            line = {"ok": True, "host": host, "metrics": metrics, "points": points}
            status, reply = 200, b"{}"
        except Exception as e:  # every failure is the test's answer
            line = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            status, reply = 400, json.dumps({"message": line["error"]}).encode()
        print(json.dumps(line), flush=True)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1])
    server = HTTPServer(("127.0.0.1", port), Handler)
    print(json.dumps({"listening": port}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
