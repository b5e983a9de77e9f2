"""Peer for `tidegate bench sanitize`: the same transforms as the hipaa-safe-harbor profile,
written as a pandas user would: vectorised string operations for years and ZIP3, each distinct
value pseudonymised once (HMAC-SHA256 from the standard library), the profile's noise in numpy.

Usage: python3 pandas_sanitize.py --in DIR --out DIR --key FILE
Prints, last, a JSON line with the seconds its work took (see synthea_spec.report).
"""
import argparse
import hashlib
import hmac
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synthea_spec as spec  # noqa: E402


def noise_column(values, table, column):
    """The profile's noise over a whole column (numpy SplitMix64, one draw per non-empty cell)."""
    filled = values != ""
    n = int(filled.sum())
    out = values.copy()
    if n == 0:
        return out
    with np.errstate(over="ignore"):
        state = (np.uint64(spec.column_seed(table, column))
                 + np.uint64(spec.GAMMA) * np.arange(1, n + 1, dtype=np.uint64))
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    raw = values[filled]
    x = raw.astype(np.float64).to_numpy()
    y = x * (1.0 + spec.NOISE_FRACTION * (u * 2.0 - 1.0))
    frac = raw.str.split(".", n=1).str[1].fillna("").str.len().clip(upper=12).to_numpy()
    out[filled] = [f"{v:.{d}f}" for v, d in zip(y, frac)]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--key", required=True)
    a = ap.parse_args()
    started = time.perf_counter()
    key = bytes.fromhex(open(a.key).read().strip())
    os.makedirs(a.out, exist_ok=True)

    def pseudo_column(values):
        uniq = pd.unique(values)
        table = {v: ("p" + hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:24]) if v else ""
                 for v in uniq}
        return values.map(table)

    def year(values):
        return values.str[:4]

    def age_cap(values):
        y = values.str[:4]
        old = (values != "") & (pd.to_numeric(y, errors="coerce") <= spec.OLDEST_YEAR)
        return y.where(~old, f"<={spec.OLDEST_YEAR}")

    def zip3(values):
        p = values.str[:3]
        bad = (p.str.len() < 3) | ~p.str.isdigit() | p.isin(spec.RESTRICTED_ZIP3)
        return p.where(~bad | (values == ""), "000")

    for name in sorted(os.listdir(a.inp)):
        if not name.endswith(".csv"):
            continue
        table = name[:-4]
        cols = spec.TABLES[table]
        df = pd.read_csv(os.path.join(a.inp, name), dtype=str, keep_default_na=False)
        if table in spec.REDACT_WHEN:
            c, values, targets = spec.REDACT_WHEN[table]
            hit = df[c].isin(values)
            for t in targets:
                df.loc[hit, t] = "[REDACTED]"
        for c in df.columns:
            act = cols[c]
            if act == spec.PSEUDO:
                df[c] = pseudo_column(df[c])
            elif act == spec.YEAR:
                df[c] = year(df[c])
            elif act == spec.AGE_CAP:
                df[c] = age_cap(df[c])
            elif act == spec.ZIP3:
                df[c] = zip3(df[c])
            elif act == spec.NOISE:
                df[c] = noise_column(df[c], table, c)
        df = df[[c for c in df.columns if cols[c] != spec.DROP]]
        df.to_csv(os.path.join(a.out, name), index=False)
    spec.fsync_tree(a.out)
    spec.report(started)


if __name__ == "__main__":
    main()
