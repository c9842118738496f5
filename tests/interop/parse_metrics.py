"""Parses OpenMetrics text on stdin with the Prometheus project's own Python parser (strict:
it rejects what Prometheus would) and prints the families as JSON:
{"name": {"type": ..., "samples": [[sample_name, {labels}, value], ...]}}."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = {
        "type": family.type,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
json.dump(families, sys.stdout)
