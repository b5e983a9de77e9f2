//! The sanitizer on the real Synthea tables in `../shared/data/synthea`: identifiers gone, foreign
//! keys still joining, keyed determinism, the classification decision, malformed input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tidegate_sanitize::{sanitize, Approval, Key, Options, Profile, SanitizeError};

use tidegate_testkit::synthea_dir as synthea;

/// Options for a source registered as the built-in profile's input, `restricted/phi`.
fn key(b: u8) -> Options {
    Options::new(Key::from_bytes(&[b; 32]).unwrap()).with_source("restricted/phi")
}

fn profile_k(k: u32) -> Profile {
    let mut p = Profile::hipaa_safe_harbor().unwrap();
    p.set_k(k).unwrap();
    p
}

/// Every column of a table, by name.
fn table(dir: &Path, name: &str) -> HashMap<String, Vec<String>> {
    let mut r = csv::Reader::from_path(dir.join(format!("{name}.csv"))).unwrap();
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let mut cols: HashMap<String, Vec<String>> =
        headers.iter().map(|h| (h.clone(), Vec::new())).collect();
    for rec in r.records() {
        let rec = rec.unwrap();
        for (h, v) in headers.iter().zip(rec.iter()) {
            cols.get_mut(h).unwrap().push(v.to_string());
        }
    }
    cols
}

fn all_output(dir: &Path) -> String {
    let mut s = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "csv") {
            s.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
    s
}

#[test]
fn direct_identifiers_and_original_ids_do_not_survive() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let report = sanitize(&profile_k(1), &data, &out, &key(1)).unwrap();
    assert_eq!(report.tables.len(), 18, "every Synthea table is covered");
    let text = all_output(&out);
    let mut checked = 0;
    let mut forbidden: Vec<(&str, &str)> = [
        ("patients", "SSN"),
        ("patients", "DRIVERS"),
        ("patients", "PASSPORT"),
        ("patients", "FIRST"),
        ("patients", "LAST"),
        ("patients", "MAIDEN"),
        ("patients", "ADDRESS"),
        ("patients", "BIRTHDATE"),
        ("patients", "BIRTHPLACE"),
        ("patients", "LAT"),
        ("patients", "LON"),
        ("providers", "NAME"),
        ("providers", "ADDRESS"),
        ("organizations", "ADDRESS"),
        ("organizations", "PHONE"),
        ("payer_transitions", "OWNER_NAME"),
        ("payer_transitions", "MEMBERID"),
        ("devices", "UDI"),
        ("imaging_studies", "SERIES_UID"),
        ("imaging_studies", "INSTANCE_UID"),
    ]
    .to_vec();
    for t in [
        "patients",
        "encounters",
        "claims",
        "careplans",
        "imaging_studies",
        "organizations",
        "providers",
        "payers",
    ] {
        forbidden.push((t, "Id"));
    }
    forbidden.push(("claims_transactions", "ID"));
    // Every 36-byte window of the output, so each UUID is looked up instead of searched for.
    let windows: HashSet<&[u8]> = text.as_bytes().windows(36).collect();
    for (t, c) in forbidden {
        for v in &table(&data, t)[c] {
            if v.is_empty() {
                continue;
            }
            let found = if v.len() == 36 {
                windows.contains(v.as_bytes())
            } else {
                text.contains(v.as_str())
            };
            assert!(!found, "{t}.{c} value survived in the output");
            checked += 1;
        }
    }
    assert!(checked > 500, "checked {checked} values");
    // No full date at all: every date column is a year.
    assert!(!text.contains("T08:"), "no timestamps remain");
    let pats = table(&out, "patients");
    assert!(
        !pats.contains_key("SSN") && !pats.contains_key("FIRST") && !pats.contains_key("ADDRESS")
    );
    assert!(pats["BIRTHDATE"]
        .iter()
        .all(|v| v.len() == 4 || v.starts_with("<=")));
    assert!(pats["ZIP"].iter().all(|v| v.len() == 3));
}

#[test]
fn foreign_keys_still_join_after_pseudonymisation() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    sanitize(&profile_k(1), &data, &out, &key(2)).unwrap();
    let ids = |t: &str, c: &str| -> HashSet<String> { table(&out, t)[c].iter().cloned().collect() };
    let patients = ids("patients", "Id");
    let encounters = ids("encounters", "Id");
    let claims = ids("claims", "Id");
    let providers = ids("providers", "Id");
    let orgs = ids("organizations", "Id");
    let payers = ids("payers", "Id");
    assert_eq!(patients.len(), 11);
    let refs: Vec<(&str, &str, &HashSet<String>)> = vec![
        ("encounters", "PATIENT", &patients),
        ("encounters", "PROVIDER", &providers),
        ("encounters", "ORGANIZATION", &orgs),
        ("encounters", "PAYER", &payers),
        ("conditions", "PATIENT", &patients),
        ("conditions", "ENCOUNTER", &encounters),
        ("observations", "PATIENT", &patients),
        ("observations", "ENCOUNTER", &encounters),
        ("medications", "ENCOUNTER", &encounters),
        ("medications", "PAYER", &payers),
        ("procedures", "ENCOUNTER", &encounters),
        ("immunizations", "ENCOUNTER", &encounters),
        ("careplans", "ENCOUNTER", &encounters),
        ("allergies", "PATIENT", &patients),
        ("devices", "ENCOUNTER", &encounters),
        ("supplies", "ENCOUNTER", &encounters),
        ("imaging_studies", "ENCOUNTER", &encounters),
        ("claims", "PATIENTID", &patients),
        ("claims", "PROVIDERID", &providers),
        ("claims", "APPOINTMENTID", &encounters),
        ("claims_transactions", "CLAIMID", &claims),
        ("claims_transactions", "PATIENTID", &patients),
        ("claims_transactions", "PROVIDERID", &providers),
        ("payer_transitions", "PATIENT", &patients),
        ("payer_transitions", "PAYER", &payers),
        ("providers", "ORGANIZATION", &orgs),
    ];
    for (t, c, target) in refs {
        let vals = &table(&out, t)[c];
        let nonempty: Vec<&String> = vals.iter().filter(|v| !v.is_empty()).collect();
        assert!(!nonempty.is_empty(), "{t}.{c} has values");
        for v in nonempty {
            assert!(
                v.starts_with('p') && v.len() == 25,
                "{t}.{c} is a pseudonym"
            );
            assert!(target.contains(v), "{t}.{c} does not join");
        }
    }
}

#[test]
fn same_key_same_output_other_key_other_pseudonyms() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    sanitize(&profile_k(1), &data, &a, &key(3)).unwrap();
    sanitize(&profile_k(1), &data, &b, &key(3)).unwrap();
    sanitize(&profile_k(1), &data, &c, &key(4)).unwrap();
    for e in std::fs::read_dir(&data).unwrap() {
        let name = e.unwrap().file_name();
        let (fa, fb) = (
            std::fs::read(a.join(&name)).unwrap(),
            std::fs::read(b.join(&name)).unwrap(),
        );
        assert_eq!(fa, fb, "{name:?} differs under the same key");
    }
    let (pa, pc) = (table(&a, "patients"), table(&c, "patients"));
    for (x, y) in pa["Id"].iter().zip(pc["Id"].iter()) {
        assert_ne!(x, y, "another key gives other pseudonyms");
    }
    assert_eq!(
        table(&a, "encounters")["CODE"],
        table(&c, "encounters")["CODE"]
    );
}

#[test]
fn lower_classification_only_when_every_check_passes() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // k = 1 trivially reached, every column covered, no residual identifier: earned.
    let r = sanitize(&profile_k(1), &data, &tmp.path().join("earned"), &key(5)).unwrap();
    assert!(r.earned, "{:?}", r.reasons);
    assert_eq!(r.output_classification, "confidential/deidentified");
    assert!(r.residual_total.is_empty());
    let on_disk: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("earned/sanitize-report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk["earned"], true);

    // The built-in k = 5 cannot be reached by 11 patients within 5% suppression: not earned.
    let r = sanitize(&profile_k(5), &data, &tmp.path().join("k5"), &key(5)).unwrap();
    assert!(!r.earned);
    assert_eq!(r.output_classification, "restricted/phi");
    assert!(
        r.reasons.iter().any(|m| m.contains("k=5 not reached")),
        "{:?}",
        r.reasons
    );
    let k = r
        .tables
        .iter()
        .find(|t| t.table == "patients")
        .unwrap()
        .k_anonymity
        .clone()
        .unwrap();
    assert!(!k.reached && k.smallest_class_before < 5 && k.rows_suppressed == 0);

    // An unknown column, dropped instead of failing: not earned, and it says which.
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let enc = std::fs::read_to_string(data.join("encounters.csv")).unwrap();
    let with_extra: String = enc
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l},NOTE\n")
            } else {
                format!("{l},x\n")
            }
        })
        .collect();
    std::fs::write(input.join("encounters.csv"), with_extra).unwrap();
    let mut p = profile_k(1);
    p.on_unknown = tidegate_sanitize::profile::OnUnknown::Drop;
    let r = sanitize(&p, &input, &tmp.path().join("unknown"), &key(5)).unwrap();
    assert!(!r.earned);
    assert!(
        r.reasons
            .iter()
            .any(|m| m.contains("encounters: columns not covered by the profile: NOTE")),
        "{:?}",
        r.reasons
    );
    assert!(!table(&tmp.path().join("unknown"), "encounters").contains_key("NOTE"));
}

#[test]
fn residual_identifier_in_a_kept_column_blocks_the_lower_classification() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let cond = std::fs::read_to_string(data.join("conditions.csv")).unwrap();
    let planted = cond.replacen(
        "Acute viral pharyngitis (disorder)",
        "pharyngitis; patient SSN 123-45-6789",
        1,
    );
    assert_ne!(planted, cond);
    std::fs::write(input.join("conditions.csv"), planted).unwrap();
    let r = sanitize(&profile_k(1), &input, &tmp.path().join("out"), &key(6)).unwrap();
    assert!(!r.earned);
    let hit = &r.tables[0].residual[0];
    assert_eq!((hit.column.as_str(), hit.count), ("DESCRIPTION", 1));
    assert!(r
        .reasons
        .iter()
        .any(|m| m.contains("residual scan found 1")));
}

/// Runs on a broken copy of one table; expects an error naming file and line, and nothing left.
fn expect_input_error(file: &str, content: &[u8], want_line: u64, want: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join(file), content).unwrap();
    let out = tmp.path().join("out");
    let err = sanitize(&profile_k(1), &input, &out, &key(7)).unwrap_err();
    let msg = err.to_string();
    match &err {
        SanitizeError::Input { path, line, .. } => {
            assert!(path.ends_with(file), "{msg}");
            assert_eq!(*line, want_line, "{msg}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(msg.contains(want) && msg.contains(file), "{msg}");
    assert!(!out.exists(), "nothing is published");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "in")
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary output left: {leftovers:?}"
    );
}

#[test]
fn malformed_input_fails_with_the_line_and_publishes_nothing() {
    let Some(data) = synthea() else { return };
    let enc = std::fs::read(data.join("encounters.csv")).unwrap();
    let lines: Vec<&[u8]> = enc.split(|b| *b == b'\n').collect();
    let with_line = |n: usize, replace: &[u8]| -> Vec<u8> {
        let mut v = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if i + 1 == n {
                v.extend_from_slice(replace);
            } else {
                v.extend_from_slice(l);
            }
            if i + 1 < lines.len() {
                v.push(b'\n');
            }
        }
        v
    };
    // A ragged row on line 5.
    let ragged = with_line(5, b"a,b,c");
    expect_input_error(
        "encounters.csv",
        &ragged,
        5,
        "ragged row: 3 fields where the header has 15",
    );
    // Invalid UTF-8 on line 7.
    let mut bad = lines[6].to_vec();
    bad.extend_from_slice(b"\xff\xfe");
    expect_input_error("encounters.csv", &with_line(7, &bad), 7, "invalid UTF-8");
    // A 2 MiB field on line 9.
    let mut huge = lines[8].to_vec();
    huge.extend(std::iter::repeat_n(b'x', 2 << 20));
    expect_input_error("encounters.csv", &with_line(9, &huge), 9, "over the limit");
    // A column the profile does not cover fails closed (header line 1).
    let mut extra = lines[0].to_vec();
    extra.extend_from_slice(b",FREE_TEXT");
    let mut body = with_line(1, &extra);
    body = body
        .split(|b| *b == b'\n')
        .enumerate()
        .flat_map(|(i, l)| {
            let mut l = l.to_vec();
            if i > 0 && !l.is_empty() {
                l.extend_from_slice(b",x");
            }
            l.push(b'\n');
            l
        })
        .collect();
    expect_input_error(
        "encounters.csv",
        &body,
        1,
        "column `FREE_TEXT` (column 16) is not covered",
    );
    // A table the profile does not name fails closed.
    expect_input_error(
        "notes.csv",
        b"ID,TEXT\n1,x\n",
        0,
        "table `notes` is not covered",
    );
    // A malformed date in a date column.
    let bad_date = String::from_utf8(lines[3].to_vec())
        .unwrap()
        .replacen("T", "X", 0);
    let mut fields: Vec<&str> = bad_date.split(',').collect();
    fields[1] = "yesterday";
    expect_input_error(
        "encounters.csv",
        &with_line(4, fields.join(",").as_bytes()),
        4,
        "column `START`: not a date",
    );
}

#[test]
fn k_suppression_leaves_the_subject_out_of_every_table() {
    let yaml = r"
name: tiny
input_classification: restricted/phi
output_classification: confidential/deidentified
reference_year: 2025
tables:
  people:
    subject: Id
    k_anonymity: { k: 2, quasi_identifiers: [ZIP], max_suppressed_percent: 40 }
    columns: { Id: pseudonymize, ZIP: zip3 }
  visits:
    subject: PERSON
    columns: { PERSON: pseudonymize, DAY: { generalize_date: shift } }
";
    let p = Profile::from_yaml(yaml, "tiny.yaml").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(
        input.join("people.csv"),
        "Id,ZIP\na,01810\nb,01899\nc,02108\nd,02110\ne,90210\n",
    )
    .unwrap();
    std::fs::write(
        input.join("visits.csv"),
        "PERSON,DAY\na,2020-01-01\na,2020-01-11\ne,2020-02-02\nb,2021-05-05T10:00:00Z\n",
    )
    .unwrap();
    // A profile file earns only with an approval of exactly its bytes (verified by the caller).
    let approval = Approval {
        keyid: "ed25519:test".into(),
        profile_digest: p.digest().to_owned(),
    };
    let r = sanitize(
        &p,
        &input,
        &tmp.path().join("out"),
        &key(8).with_approval(approval),
    )
    .unwrap();
    assert!(r.earned, "{:?}", r.reasons);
    let people = &r.tables[0];
    assert_eq!(
        (
            people.table.as_str(),
            people.rows_suppressed_k,
            people.rows_out
        ),
        ("people", 1, 4)
    );
    let visits = &r.tables[1];
    assert_eq!((visits.rows_suppressed_subject, visits.rows_out), (1, 3));
    let v = table(&tmp.path().join("out"), "visits");
    // A consistent per-subject shift keeps the 10-day interval of subject `a`.
    let day = |s: &str| -> i64 {
        let d = s.split('T').next().unwrap();
        let p: Vec<i64> = d.split('-').map(|x| x.parse().unwrap()).collect();
        // Days since an epoch (civil calendar, March-based year).
        let (y, m) = if p[1] <= 2 {
            (p[0] - 1, p[1] + 9)
        } else {
            (p[0], p[1] - 3)
        };
        365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + p[2]
    };
    assert_eq!(v["PERSON"][0], v["PERSON"][1]);
    assert_ne!(v["DAY"][0], "2020-01-01");
    let gap = day(&v["DAY"][1]) - day(&v["DAY"][0]);
    assert_eq!(gap, 10);
    assert!(v["DAY"][2].ends_with("T10:00:00Z"));
}

#[test]
fn profile_errors_name_the_line() {
    let err = Profile::from_yaml("name: x\ninput_classification: a\noutput_classification: b\nreference_year: 2025\ntables:\n  t:\n    columns: { A: scramble }\n", "bad.yaml").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("bad.yaml:7:"), "{msg}");
}
