#!/usr/bin/env python3
"""The layers of the sources, checked from their #include lines.

Reads every `#include "..."` of core/common/, proto/, core/client/ and
core/router/, resolves it as the build does (the including file's
directory, then core/, then the top directory), and fails on:
  - a cycle of includes (printed file by file): a header that needs
    itself back cannot be read, or moved, on its own;
  - an include against the direction of the layers: common/ includes only
    common/; proto/ only common/ and proto/; the client (core/client/)
    nothing of the router, and the router nothing of the client. So the
    client library and the shared code never pull in a router type;
  - within core/router/, an include against its layers (LAYERS below, as
    docs/architecture.md's map draws them): a file includes headers of
    its own layer or lower ones, and of the three services every part of
    a shard calls (SERVICES); a file in no layer is named, so the map and
    this list keep up with new files.
Usage: check_includes.py TOP-DIRECTORY
"""
import os
import re
import sys

DIRS = ["core/common", "proto", "core/client", "core/router"]
# What each directory may include, besides itself.
MAY = {
    "core/common": {"core/common"},
    "proto": {"core/common", "proto"},
    "core/client": {"core/common", "proto", "core/client"},
    "core/router": {"core/common", "proto", "core/router"},
}
# core/router/ by module (file name without .c/.h), from the bottom:
# 0 primitives (tables and queues that know no shard or connection), 1 the
# types (-t.h), 2 features, 3 dispatch, 4 the loop, 5 the lifecycle.
LAYERS = {
    0: "addrtab auth http jwt mailbox pattern reqtab route rstat stats ws",
    1: "conn-t local-t mail-t peers-t req-t router-t shard-t",
    2: "admin admin_http admin_json admin_page balance bcast cluster cluster-int cluster_admin cluster_batch cluster_bcast cluster_cfg cluster_handle cluster_live cluster_presence conn_tls "
       "conn_ws deliver edge_auth edge_call flow goodbye handshake local local_call metrics move outq peers "
       "register request",
    3: "frame mail",
    4: "accept conn shard",
    5: "router",
}
LAYER = {m: n for n, ms in LAYERS.items() for m in ms.split()}
# Headers of higher layers that lower ones may include all the same: the
# three services every part of a shard calls (closing a connection, taking
# a submission slot, mailing another shard).
SERVICES = {"conn.h", "shard.h", "mail.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def module(path):
    return os.path.splitext(os.path.basename(path))[0]


def main(top):
    top = os.path.abspath(top)
    files = []
    for d in DIRS:
        for name in sorted(os.listdir(os.path.join(top, d))):
            if name.endswith((".c", ".h")):
                files.append(os.path.join(d, name))
    if len(files) < 20:
        print(f"only {len(files)} sources under {top}: wrong directory?")
        return 1

    problems = []
    edges = {}
    for f in files:
        if f.startswith("core/router/") and module(f) not in LAYER:
            problems.append(f"{f}: in no layer: add it to LAYERS and to the map")
        with open(os.path.join(top, f)) as fh:
            text = COMMENT.sub("", fh.read())
        edges[f] = []
        for inc in INCLUDE.findall(text):
            found = None
            for root in (os.path.dirname(f), "core", ""):
                cand = os.path.normpath(os.path.join(root, inc))
                if os.path.isfile(os.path.join(top, cand)):
                    found = cand
                    break
            if found is None:
                problems.append(f'{f}: #include "{inc}" is not a file under the include roots')
                continue
            edges[f].append(found)
            src, dst = os.path.dirname(f), os.path.dirname(found)
            if dst not in MAY[src]:
                problems.append(f'{f}: #include "{inc}": {src}/ may include only '
                                f'{", ".join(sorted(d + "/" for d in MAY[src]))}')
            elif src == dst == "core/router":
                a, b = LAYER.get(module(f)), LAYER.get(module(found))
                if a is not None and b is not None and b > a \
                        and os.path.basename(found) not in SERVICES:
                    problems.append(f'{f}: #include "{inc}": layer {a} includes layer {b} '
                                    '(tests/unit/check_includes.py, LAYERS)')

    # Depth-first search; a file met again while still on the path closes
    # a cycle, printed from that file round to itself.
    state, path = {}, []

    def visit(f):
        state[f] = "open"
        path.append(f)
        for g in edges.get(f, []):
            if state.get(g) == "open":
                cycle = path[path.index(g):] + [g]
                problems.append("include cycle: " + " -> ".join(cycle))
            elif g not in state:
                visit(g)
        path.pop()
        state[f] = "done"

    for f in files:
        if f not in state:
            visit(f)

    for p in problems:
        print(p)
    n = sum(len(v) for v in edges.values())
    print(f"{len(files)} files, {n} includes: "
          + ("ok" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
