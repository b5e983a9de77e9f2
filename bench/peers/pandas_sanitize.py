"""Peer for `tidegate bench sanitize`: the same transforms as the hipaa-safe-harbor profile,
written the plain way with pandas and the standard library's HMAC.

Usage: python3 pandas_sanitize.py --in DIR --out DIR --key FILE
"""
import argparse
import hashlib
import hmac
import os
import random
import sys

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synthea_spec as spec  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--key", required=True)
    a = ap.parse_args()
    key = bytes.fromhex(open(a.key).read().strip())
    rng = random.Random(20251)
    os.makedirs(a.out, exist_ok=True)

    def pseudo(v):
        if not v:
            return ""
        return "p" + hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:24]

    def noise(v):
        if not v:
            return ""
        decimals = len(v.split(".", 1)[1]) if "." in v else 0
        return f"{float(v) * (1 + spec.NOISE_FRACTION * rng.uniform(-1, 1)):.{decimals}f}"

    fns = {spec.PSEUDO: pseudo, spec.YEAR: spec.year, spec.AGE_CAP: spec.age_cap,
           spec.ZIP3: spec.zip3, spec.NOISE: noise}
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
            if act in fns:
                df[c] = df[c].map(fns[act])
        df = df[[c for c in df.columns if cols[c] != spec.DROP]]
        df.to_csv(os.path.join(a.out, name), index=False)


if __name__ == "__main__":
    main()
