"""Peer for `tidegate bench sanitize`: the same transforms as the hipaa-safe-harbor profile with
Presidio's structured engine (presidio-structured), each column mapped explicitly to an entity
whose operator does the transform (no language model is needed for mapped columns). Presidio's
own `hash` operator is salted SHA-256, not HMAC, so pseudonyms use a `custom` operator with HMAC
to stay comparable; dropped columns are redacted by Presidio and then left out of the file.

The profile's noise is a custom operator per column (its own seeded stream).

Usage: python3 presidio_sanitize.py --in DIR --out DIR --key FILE
Prints, last, a JSON line with the seconds its work took (see synthea_spec.report).
"""
import argparse
import hashlib
import hmac
import os
import sys
import time

import pandas as pd
from presidio_anonymizer.entities import OperatorConfig
from presidio_structured import StructuredEngine
from presidio_structured.config import StructuredAnalysis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synthea_spec as spec  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--key", required=True)
    a = ap.parse_args()
    started = time.perf_counter()
    key = bytes.fromhex(open(a.key).read().strip())
    os.makedirs(a.out, exist_ok=True)

    def pseudo(v):
        if not v:
            return ""
        return "p" + hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:24]

    operators = {
        "TG_PSEUDONYM": OperatorConfig("custom", {"lambda": pseudo}),
        "TG_DATE_YEAR": OperatorConfig("custom", {"lambda": spec.year}),
        "TG_AGE_CAP": OperatorConfig("custom", {"lambda": spec.age_cap}),
        "TG_ZIP3": OperatorConfig("custom", {"lambda": spec.zip3}),
        "TG_DROP": OperatorConfig("redact", {}),
    }
    entity = {spec.PSEUDO: "TG_PSEUDONYM", spec.YEAR: "TG_DATE_YEAR", spec.AGE_CAP: "TG_AGE_CAP",
              spec.ZIP3: "TG_ZIP3", spec.DROP: "TG_DROP"}
    engine = StructuredEngine()
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
        mapping = {c: entity[cols[c]] for c in df.columns if cols[c] in entity}
        ops = dict(operators)
        for c in df.columns:
            if cols[c] == spec.NOISE:
                mapping[c] = f"TG_NOISE_{c}"
                ops[mapping[c]] = OperatorConfig("custom", {"lambda": spec.Noise(table, c)})
        df = engine.anonymize(df, StructuredAnalysis(entity_mapping=mapping), operators=ops)
        df = df[[c for c in df.columns if cols[c] != spec.DROP]]
        df.to_csv(os.path.join(a.out, name), index=False)
    spec.fsync_tree(a.out)
    spec.report(started)


if __name__ == "__main__":
    main()
