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
  - a router primitive (PRIMITIVES: tables and queues that know nothing of
    a shard or a connection) including a router header other than another
    primitive's, so each stays testable on its own (tests/unit/).
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
# core/router/ files by name without .c/.h: the bottom layer of the router
# (docs/architecture.md, "Map").
PRIMITIVES = {"addrtab", "auth", "mailbox", "pattern", "reqtab", "route", "rstat", "stats"}
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
            elif src == dst == "core/router" and module(f) in PRIMITIVES \
                    and module(found) not in PRIMITIVES:
                problems.append(f'{f}: #include "{inc}": a router primitive includes only '
                                'other primitives (' + ", ".join(sorted(PRIMITIVES)) + ")")

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
