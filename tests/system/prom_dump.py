#!/usr/bin/python3
"""Parses the router's /metrics with a parser we did not write.

Reads a Prometheus text exposition (format 0.0.4) on stdin and parses it
with prometheus_client.parser.text_string_to_metric_families (Debian's
python3-prometheus-client). Prints one line per family, "family NAME TYPE",
and one per sample, "sample NAME LABELS VALUE", where LABELS are the
sample's labels sorted by name as name=HEX(value) joined by ',' ("-" when
none), so a label value of any bytes reaches the test intact. Exits 1,
saying why on stderr, when the text does not parse, a family lacks its
HELP or TYPE line, or a histogram's buckets are not cumulative, do not end
with +Inf, or disagree with its _count.
Usage: prom_dump.py < exposition
"""
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def fail(why):
    print(f"prom_dump: {why}", file=sys.stderr)
    sys.exit(1)


def main():
    text = sys.stdin.read()
    # The parser accepts a family without HELP or TYPE (help "", type
    # "unknown"): they are looked for in the text itself.
    helps, types = {}, {}
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if line.startswith("# HELP ") and len(parts) == 4:
            helps[parts[2]] = parts[3]
        elif line.startswith("# TYPE ") and len(parts) == 4:
            types[parts[2]] = parts[3]
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and others
        fail(f"does not parse: {e!r}")
    if not families:
        fail("no families")
    out = []
    for fam in families:
        # A counter's family is named without its _total.
        declared = [n for n in (fam.name, fam.name + "_total") if n in types]
        if not declared:
            fail(f"{fam.name}: no TYPE line")
        if not any(helps.get(n) for n in declared):
            fail(f"{fam.name}: no HELP text")
        if fam.type not in ("counter", "gauge", "histogram"):
            fail(f"{fam.name}: type {fam.type}")
        out.append(f"family {fam.name} {fam.type}")
        series = {}
        for s in fam.samples:
            labels = ",".join(f"{k}={v.encode().hex()}" for k, v in sorted(s.labels.items()))
            out.append(f"sample {s.name} {labels or '-'} {s.value!r}")
            if fam.type == "histogram":
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                h = series.setdefault(key, {"buckets": [], "count": None})
                if s.name.endswith("_bucket"):
                    h["buckets"].append((float(s.labels["le"]), s.value))
                elif s.name.endswith("_count"):
                    h["count"] = s.value
        for key, h in series.items():
            b = h["buckets"]
            if not b or not math.isinf(b[-1][0]):
                fail(f"{fam.name}{key}: no +Inf bucket")
            if any(b[i][0] >= b[i + 1][0] or b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
                fail(f"{fam.name}{key}: buckets not ascending and cumulative")
            if h["count"] != b[-1][1]:
                fail(f"{fam.name}{key}: _count {h['count']} is not the +Inf bucket {b[-1][1]}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
