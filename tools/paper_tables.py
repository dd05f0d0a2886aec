#!/usr/bin/env python
"""Print every row we cite from the papers next to edgekit's reproduced params and multiply-adds.

usage: python tools/paper_tables.py [--family mobilenet_v3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

import edgekit
from edgekit.papers import MACS_REL_TOL, PARAMS_REL_TOL, all_rows, not_reproduced
from edgekit.registry import get_spec
from edgekit.report import table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", help="only this family (e.g. mobilenet_v1, shufflenet_v1, efficientnet)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rows, records, failures = [], [], 0
    documented = {id(r) for r in not_reproduced()}
    for row in [*all_rows(), *not_reproduced()]:
        if args.family and get_spec(row.model).family != args.family:
            continue
        result = edgekit.info(row.model, alpha=row.alpha, res=row.res)
        macs_m, params_m = result.macs / 1e6, result.params / 1e6
        ok = row.macs_match(macs_m) and row.params_match(params_m)
        known = id(row) in documented
        failures += not ok and not known
        macs_dev = 100 * (macs_m / float(row.macs_m) - 1)
        params_dev = 100 * (params_m / float(row.params_m) - 1) if row.params_m else None
        records.append({**row.__dict__, "ours_macs_m": round(macs_m, 3), "ours_params_m": round(params_m, 4), "ok": ok, "documented_discrepancy": known})
        rows.append([
            row.model, f"{row.alpha:g}", row.res,
            row.macs_m, f"{macs_m:.1f}", f"{macs_dev:+.1f}%",
            row.params_m or "-", f"{params_m:.2f}", "-" if params_dev is None else f"{params_dev:+.1f}%",
            "ok" if ok else ("documented" if known else "MISMATCH"), row.source,
        ])
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print(table(rows, ["model", "alpha", "res", "paper MACs(M)", "ours", "dev", "paper params(M)", "ours", "dev", "", "source"],
                    align="llrrrrrrrll"))
        print(f"\n{len(rows)} rows, {failures} mismatches (MACs within {MACS_REL_TOL:.1%}, params within {PARAMS_REL_TOL:.0%},"
              " or the paper's printed precision)")
        for row in not_reproduced():
            print(f"documented: {row.model} a{row.alpha:g} r{row.res} ({row.source}): {row.note}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
