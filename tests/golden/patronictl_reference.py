"""Regenerates the golden files from Patroni's own patronictl rendering code.

Usage: python3 patronictl_reference.py   (with `patroni` installed in the interpreter)

Each cluster_*.json holds what GET /cluster answers plus the `initialize` key; patronictl's
`output_members` is fed that document (its DCS read is replaced), so the expected files are
exactly what patronictl prints for the same cluster.
"""
import contextlib
import io
import json
import sys
from types import SimpleNamespace

import patroni.ctl as ctl

ctl.is_citus_cluster = lambda: False

FORMATS = ["pretty", "tsv", "json", "yaml", "topology"]


def capture(fn, *args, **kwargs):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fn(*args, **kwargs)
    return out.getvalue()


def main():
    for name in ["basic", "extended", "uninitialized", "initializing", "standby"]:
        with open(f"cluster_{name}.json") as f:
            doc = json.load(f)
        for fmt in FORMATS:
            for extended in (False, True):
                cluster = json.loads(json.dumps(doc["cluster"]))
                ctl.cluster_as_json = lambda _c, cluster=cluster: cluster
                fake = SimpleNamespace(initialize=doc["initialize"], workers={})
                text = capture(ctl.output_members, fake, cluster["scope"], extended, fmt)
                suffix = "_e" if extended else ""
                with open(f"list_{name}{suffix}.{fmt}", "w") as f:
                    f.write(text)
    with open("history_rows.json") as f:
        rows = json.load(f)
    for fmt in FORMATS[:4]:
        lines = [list(r) + [""] * (5 - len(r)) for r in rows]
        text = capture(ctl.print_output, ["TL", "LSN", "Reason", "Timestamp", "New Leader"], lines,
                       {"TL": "r", "LSN": "r"}, fmt)
        with open(f"history.{fmt}", "w") as f:
            f.write(text)
    # query: the rows as psycopg hands them to Python (ints, floats, bools, None, strings),
    # printed by the same print_output call patronictl's `query` makes; an error line has
    # no columns. tsv is also written with `--delimiter ,`.
    with open("query_rows.json") as f:
        cases = json.load(f)
    for name, case in cases.items():
        for fmt in FORMATS[:4]:
            text = capture(ctl.print_output, case["columns"], case["rows"], fmt=fmt)
            with open(f"query_{name}.{fmt}", "w") as f:
                f.write(text)
        text = capture(ctl.print_output, case["columns"], case["rows"], fmt="tsv", delimiter=",")
        with open(f"query_{name}.csv", "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
