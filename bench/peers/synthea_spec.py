"""Column actions of the built-in hipaa-safe-harbor profile for the tables the benchmark
generator writes, shared by the two peer scripts so they do the same work as the Rust engine."""

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
