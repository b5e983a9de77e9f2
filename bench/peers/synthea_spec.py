"""Column actions of the built-in hipaa-safe-harbor profile for the tables the benchmark
generator writes, shared by the two peer scripts so they do the same work as the Rust engine,
and the profile's seeded noise (SplitMix64 per column, seeded from the profile's seed and the
column's name), so every table they write can be compared byte for byte with tidegate's."""
import os
import time

REFERENCE_YEAR = 2025
OLDEST_YEAR = REFERENCE_YEAR - 90
RESTRICTED_ZIP3 = {"036", "059", "063", "102", "203", "556", "692", "790", "821", "823",
                   "830", "831", "878", "879", "884", "890", "893"}

PSEUDO, YEAR, AGE_CAP, ZIP3, NOISE, DROP, KEEP = "pseudo", "year", "age_cap", "zip3", "noise", "drop", "keep"

TABLES = {
    "patients": {
        "Id": PSEUDO, "BIRTHDATE": AGE_CAP, "DEATHDATE": YEAR, "SSN": DROP, "DRIVERS": DROP,
        "PASSPORT": DROP, "PREFIX": DROP, "FIRST": DROP, "LAST": DROP, "SUFFIX": DROP,
        "MAIDEN": DROP, "MARITAL": KEEP, "RACE": KEEP, "ETHNICITY": KEEP, "GENDER": KEEP,
        "BIRTHPLACE": DROP, "ADDRESS": DROP, "CITY": DROP, "STATE": KEEP, "COUNTY": DROP,
        "FIPS": DROP, "ZIP": ZIP3, "LAT": DROP, "LON": DROP, "HEALTHCARE_EXPENSES": NOISE,
        "HEALTHCARE_COVERAGE": NOISE, "INCOME": NOISE,
    },
    "encounters": {
        "Id": PSEUDO, "START": YEAR, "STOP": YEAR, "PATIENT": PSEUDO, "ORGANIZATION": PSEUDO,
        "PROVIDER": PSEUDO, "PAYER": PSEUDO, "ENCOUNTERCLASS": KEEP, "CODE": KEEP,
        "DESCRIPTION": KEEP, "BASE_ENCOUNTER_COST": KEEP, "TOTAL_CLAIM_COST": KEEP,
        "PAYER_COVERAGE": KEEP, "REASONCODE": KEEP, "REASONDESCRIPTION": KEEP,
    },
    "conditions": {
        "START": YEAR, "STOP": YEAR, "PATIENT": PSEUDO, "ENCOUNTER": PSEUDO, "CODE": KEEP,
        "DESCRIPTION": KEEP,
    },
    "observations": {
        "DATE": YEAR, "PATIENT": PSEUDO, "ENCOUNTER": PSEUDO, "CATEGORY": KEEP, "CODE": KEEP,
        "DESCRIPTION": KEEP, "VALUE": KEEP, "UNITS": KEEP, "TYPE": KEEP,
    },
    "organizations": {
        "Id": PSEUDO, "NAME": DROP, "ADDRESS": DROP, "CITY": DROP, "STATE": KEEP, "ZIP": ZIP3,
        "LAT": DROP, "LON": DROP, "PHONE": DROP, "REVENUE": KEEP, "UTILIZATION": KEEP,
    },
    "providers": {
        "Id": PSEUDO, "ORGANIZATION": PSEUDO, "NAME": DROP, "GENDER": KEEP, "SPECIALITY": KEEP,
        "ADDRESS": DROP, "CITY": DROP, "STATE": KEEP, "ZIP": ZIP3, "LAT": DROP, "LON": DROP,
        "ENCOUNTERS": KEEP, "PROCEDURES": KEEP,
    },
    "payers": dict(
        {"Id": PSEUDO, "NAME": KEEP, "OWNERSHIP": KEEP, "ADDRESS": DROP, "CITY": DROP,
         "STATE_HEADQUARTERED": KEEP, "ZIP": ZIP3, "PHONE": DROP},
        **{c: KEEP for c in ["AMOUNT_COVERED", "AMOUNT_UNCOVERED", "REVENUE", "COVERED_ENCOUNTERS",
                             "UNCOVERED_ENCOUNTERS", "COVERED_MEDICATIONS", "UNCOVERED_MEDICATIONS",
                             "COVERED_PROCEDURES", "UNCOVERED_PROCEDURES", "COVERED_IMMUNIZATIONS",
                             "UNCOVERED_IMMUNIZATIONS", "UNIQUE_CUSTOMERS", "QOLS_AVG", "MEMBER_MONTHS"]}),
}

# Row-level redaction: observation answers whose LOINC code says they are a street address.
REDACT_WHEN = {"observations": ("CODE", {"56799-0"}, ["VALUE"])}
NOISE_FRACTION = 0.05
# The profile's `seed`.
PROFILE_SEED = 20251

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix(z):
    """SplitMix64's finaliser."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def column_seed(table, column):
    """The noise seed of one column: the profile's seed XOR a seeded FNV-1a of `table.column`."""
    h = 0xCBF29CE484222325
    for b in f"{table}.{column}".encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return PROFILE_SEED ^ mix((h + GAMMA) & MASK)


class Noise:
    """Uniform relative noise of at most NOISE_FRACTION, drawn per non-empty cell in row order,
    written with the input's number of decimals (at most 12)."""

    def __init__(self, table, column):
        self.state = column_seed(table, column)

    def __call__(self, v):
        if not v:
            return ""
        self.state = (self.state + GAMMA) & MASK
        u = (mix(self.state) >> 11) / float(1 << 53)
        decimals = min(len(v.split(".", 1)[1]) if "." in v else 0, 12)
        return f"{float(v) * (1.0 + NOISE_FRACTION * (u * 2.0 - 1.0)):.{decimals}f}"


def fsync_tree(out):
    """Makes the written tables durable, as tidegate does before it reports."""
    for name in sorted(os.listdir(out)):
        fd = os.open(os.path.join(out, name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def report(started):
    """The last line a peer prints: the seconds its work took (reading, transforming, writing and
    syncing the tables), timed like tidegate's, without the interpreter's start-up and imports."""
    print(f'{{"elapsed_s": {time.perf_counter() - started:.6f}}}')


def year(v):
    return v[:4] if v else ""


def age_cap(v):
    if not v:
        return ""
    y = int(v[:4])
    return f"<={OLDEST_YEAR}" if y <= OLDEST_YEAR else v[:4]


def zip3(v):
    if not v:
        return ""
    p = v[:3]
    return "000" if (len(p) < 3 or not p.isdigit() or p in RESTRICTED_ZIP3) else p
