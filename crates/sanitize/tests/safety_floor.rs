//! The safety floor of the classification decision: a profile's word is not taken. Only a
//! built-in or approved profile, written for the source's classification, can earn; an output
//! that is its input again, a kept identifying column, an original identifier value anywhere in
//! the output, or a non-code in a `code` column never earns; no profile lifts export control.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tidegate_sanitize::scan::Kind;
use tidegate_sanitize::{sanitize, Approval, Key, Options, Profile, Report, SanitizeError};

use tidegate_testkit::synthea_dir as synthea;

fn opts() -> Options {
    Options::new(Key::from_bytes(&[3; 32]).unwrap()).with_source("restricted/phi")
}

/// An approval of exactly `p` (what a verified approver signature gives the sanitizer).
fn approved(p: &Profile) -> Options {
    opts().with_approval(Approval {
        keyid: "ed25519:approver".into(),
        profile_digest: p.digest().to_owned(),
    })
}

fn has_reason(r: &Report, part: &str) -> bool {
    r.reasons.iter().any(|x| x.contains(part))
}

/// The hostile profile: `output_classification: public`, `keep` for ADDRESS and Id, `code` for
/// every other column of patients.csv.
fn hostile(header: &str) -> Profile {
    let mut yaml = String::from(
        "name: looks-harmless\ninput_classification: restricted/phi\noutput_classification: public\nlifts: [phi]\nreference_year: 2025\ntables:\n  patients:\n    columns:\n",
    );
    for c in header.split(',') {
        let action = if c == "ADDRESS" || c == "Id" {
            "keep"
        } else {
            "code"
        };
        yaml.push_str(&format!("      {c}: {action}\n"));
    }
    Profile::from_yaml(&yaml, "hostile.yaml").unwrap()
}

#[test]
fn a_profile_file_that_copies_patients_earns_nothing_even_when_approved() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(data.join("patients.csv"), input.join("patients.csv")).unwrap();
    let header = std::fs::read_to_string(input.join("patients.csv"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let p = hostile(&header);

    // Unapproved: not earned, and it says why.
    let r = sanitize(&p, &input, &tmp.path().join("a"), &opts()).unwrap();
    assert!(!r.earned);
    assert_eq!(r.output_classification, "restricted/phi");
    assert_eq!(r.profile_authority, "unapproved");
    assert!(
        has_reason(&r, "neither built in nor signed by an approver key"),
        "{:?}",
        r.reasons
    );
    assert_eq!(
        std::fs::read(tmp.path().join("a/patients.csv")).unwrap(),
        std::fs::read(input.join("patients.csv")).unwrap(),
        "the output is byte-identical to the input"
    );

    // Approved (a careless approver): the data checks still refuse it, each for its own reason.
    let r = sanitize(&p, &input, &tmp.path().join("b"), &approved(&p)).unwrap();
    assert!(!r.earned);
    assert_eq!(r.profile_authority, "approved");
    assert_eq!(r.output_classification, "restricted/phi");
    let t = &r.tables[0];
    assert!(t.identical_to_input, "{t:?}");
    assert!(
        has_reason(&r, "the output is the input again"),
        "{:?}",
        r.reasons
    );
    let flagged: Vec<&str> = t.identifying.iter().map(|c| c.column.as_str()).collect();
    for c in ["Id", "ADDRESS", "FIRST", "LAST", "SSN", "BIRTHDATE", "CITY"] {
        assert!(
            flagged.contains(&c),
            "{c} is an identifier written as it came in: {flagged:?}"
        );
    }
    assert!(
        !flagged.contains(&"GENDER") && !flagged.contains(&"RACE"),
        "{flagged:?}"
    );
    // `code` takes codes only: SSNs are SSNs, dates and names are no codes.
    let kinds = |col: &str| {
        t.residual
            .iter()
            .filter(|h| h.column == col)
            .map(|h| h.kind)
            .collect::<Vec<_>>()
    };
    assert!(kinds("SSN").contains(&Kind::Ssn), "{:?}", t.residual);
    assert!(
        kinds("BIRTHDATE").contains(&Kind::NotACode),
        "{:?}",
        t.residual
    );
    assert!(kinds("FIRST").contains(&Kind::NotACode) || flagged.contains(&"FIRST"));
    // The report holds names and counts, never values.
    let json = std::fs::read_to_string(tmp.path().join("b/sanitize-report.json")).unwrap();
    let first_ssn = std::fs::read_to_string(input.join("patients.csv"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(3)
        .unwrap()
        .to_owned();
    assert!(!json.contains(&first_ssn));
}

/// `scan_text` (or any action) that leaves an identifier column as it was is no better than
/// `keep`.
#[test]
fn a_profile_that_passes_identifiers_through_another_action_earns_nothing() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(data.join("patients.csv"), input.join("patients.csv")).unwrap();
    let header = std::fs::read_to_string(input.join("patients.csv"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let mut yaml = String::from(
        "name: scanned\ninput_classification: restricted/phi\noutput_classification: public\nreference_year: 2025\ntables:\n  patients:\n    columns:\n",
    );
    for c in header.split(',') {
        yaml.push_str(&format!("      {c}: scan_text\n"));
    }
    let p = Profile::from_yaml(&yaml, "scanned.yaml").unwrap();
    let r = sanitize(&p, &input, &tmp.path().join("out"), &approved(&p)).unwrap();
    assert!(!r.earned);
    let t = &r.tables[0];
    let flagged: Vec<&str> = t.identifying.iter().map(|c| c.column.as_str()).collect();
    // Every identifier column of the built-in profile is flagged, the SSN column too: scanning
    // protects it less than dropping it, even where every SSN was redacted.
    for c in ["Id", "ADDRESS", "FIRST", "LAST", "BIRTHDATE", "SSN"] {
        assert!(flagged.contains(&c), "{c}: {flagged:?}");
    }
}

#[test]
fn a_no_op_noise_on_identifier_columns_earns_nothing() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(data.join("patients.csv"), input.join("patients.csv")).unwrap();
    // The demo's profile, but ZIP and the home coordinates under noise of 0 (or next to it).
    let base = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/profiles/burst-training.yaml"),
    )
    .unwrap();
    for noise in ["0.0", "0.000000001"] {
        let yaml = base
            .replace(
                "      ZIP: drop\n",
                &format!("      ZIP: {{ noise: {noise} }}\n"),
            )
            .replace(
                "      LAT: drop\n",
                &format!("      LAT: {{ noise: {noise} }}\n"),
            )
            .replace(
                "      LON: drop\n",
                &format!("      LON: {{ noise: {noise} }}\n"),
            );
        assert_ne!(yaml, base);
        let p = Profile::from_yaml(&yaml, "noise.yaml").unwrap();
        let out = tmp.path().join(format!("out-{noise}"));
        let r = sanitize(&p, &input, &out, &approved(&p)).unwrap();
        assert!(
            !r.earned,
            "noise {noise} on ZIP/LAT/LON earned a lower classification"
        );
        let t = r.tables.iter().find(|t| t.table == "patients").unwrap();
        let flagged: Vec<&str> = t.identifying.iter().map(|c| c.column.as_str()).collect();
        for c in ["ZIP", "LAT", "LON"] {
            assert!(flagged.contains(&c), "{noise} {c}: {flagged:?}");
        }
    }
}

#[test]
fn only_built_in_or_approved_profiles_for_the_source_classification_earn() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(
        input.join("people.csv"),
        "Id,ZIP\nalpha-1,01810\nbravo-2,01899\n",
    )
    .unwrap();
    let yaml = "name: tiny\ninput_classification: restricted/phi\noutput_classification: confidential/deidentified\nlifts: [phi]\nreference_year: 2025\ntables:\n  people:\n    columns: { Id: pseudonymize, ZIP: zip3 }\n";
    let p = Profile::from_yaml(yaml, "tiny.yaml").unwrap();
    let run = |name: &str, o: &Options| sanitize(&p, &input, &tmp.path().join(name), o).unwrap();

    let ok = run("ok", &approved(&p));
    assert!(ok.earned, "{:?}", ok.reasons);
    assert_eq!(ok.approved_by.as_deref(), Some("ed25519:approver"));
    assert_eq!(ok.profile_digest, p.digest());
    assert!(p.digest().starts_with("sha256:") && p.digest().len() == 71);

    // One byte changed after approval: another digest, the approval does not cover it.
    let changed = Profile::from_yaml(&yaml.replace("2025", "2026"), "tiny.yaml").unwrap();
    let r = sanitize(&changed, &input, &tmp.path().join("changed"), &approved(&p)).unwrap();
    assert!(
        !r.earned && has_reason(&r, "changed since it was signed"),
        "{:?}",
        r.reasons
    );

    // The source is not what the profile is written for, or not known: nothing earned, and the
    // output keeps the source's classification.
    let other = opts()
        .with_source("restricted/phi,export-controlled")
        .with_approval(Approval {
            keyid: "k".into(),
            profile_digest: p.digest().to_owned(),
        });
    let r = run("export", &other);
    assert!(
        !r.earned
            && has_reason(
                &r,
                "is written for `restricted/phi` but the source is classified"
            ),
        "{:?}",
        r.reasons
    );
    assert_eq!(r.output_classification, "restricted/phi,export-controlled");
    let unknown = Options::new(Key::from_bytes(&[3; 32]).unwrap()).with_approval(Approval {
        keyid: "k".into(),
        profile_digest: p.digest().to_owned(),
    });
    let r = run("unknown", &unknown);
    assert!(
        !r.earned && has_reason(&r, "source's classification is unknown"),
        "{:?}",
        r.reasons
    );

    // The built-in profile needs no approval, and lowering k voids an approval of a file.
    let mut strict = Profile::from_yaml(
        "name: k\ninput_classification: restricted/phi\noutput_classification: internal\nreference_year: 2025\ntables:\n  people:\n    k_anonymity: { k: 2, quasi_identifiers: [ZIP] }\n    columns: { Id: pseudonymize, ZIP: zip3 }\n",
        "k.yaml",
    )
    .unwrap();
    let o = approved(&strict);
    strict.set_k(1).unwrap();
    let r = sanitize(&strict, &input, &tmp.path().join("k1"), &o).unwrap();
    assert!(
        !r.earned && has_reason(&r, "--k lowered k"),
        "{:?}",
        r.reasons
    );
    assert!(Profile::hipaa_safe_harbor().unwrap().is_builtin());
}

#[test]
fn original_identifier_values_anywhere_in_the_output_do_not_earn() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // People are pseudonymised in one table and copied as they are into another; an SSN dropped
    // from one table is kept in a free-text note without its dashes' shape.
    std::fs::write(
        input.join("people.csv"),
        "Id,SSN,SEX\nc0ffee-17,123456789,F\nbeef-0042,987654321,M\n",
    )
    .unwrap();
    std::fs::write(
        input.join("visits.csv"),
        "PERSON,WHO,NOTE\nc0ffee-17,c0ffee-17,seen\nbeef-0042,beef-0042,ref 987654321 called\n",
    )
    .unwrap();
    let yaml = "name: leaky\ninput_classification: restricted/phi\noutput_classification: internal\nreference_year: 2025\ntables:\n  people:\n    columns: { Id: pseudonymize, SSN: drop, SEX: keep }\n  visits:\n    columns: { PERSON: pseudonymize, WHO: keep, NOTE: scan_text }\n";
    let p = Profile::from_yaml(yaml, "leaky.yaml").unwrap();
    let r = sanitize(&p, &input, &tmp.path().join("out"), &approved(&p)).unwrap();
    assert!(!r.earned);
    let visits = r.tables.iter().find(|t| t.table == "visits").unwrap();
    let found = |col: &str| {
        visits
            .residual
            .iter()
            .find(|h| h.column == col && h.kind == Kind::OriginalValue)
            .map(|h| h.count)
    };
    assert_eq!(found("WHO"), Some(2), "{:?}", visits.residual);
    assert_eq!(
        found("NOTE"),
        Some(1),
        "a token of free text: {:?}",
        visits.residual
    );
    assert_eq!(r.residual_total.get(&Kind::OriginalValue), Some(&3));
    assert!(
        found("PERSON").is_none(),
        "pseudonyms are not original values"
    );

    // The same tables with the copy pseudonymised and the note clean: earned.
    std::fs::write(
        input.join("visits.csv"),
        "PERSON,WHO,NOTE\nc0ffee-17,c0ffee-17,seen\nbeef-0042,beef-0042,called\n",
    )
    .unwrap();
    let fixed = Profile::from_yaml(
        &yaml.replace("WHO: keep", "WHO: pseudonymize"),
        "fixed.yaml",
    )
    .unwrap();
    let r = sanitize(&fixed, &input, &tmp.path().join("fixed"), &approved(&fixed)).unwrap();
    assert!(r.earned, "{:?}", r.reasons);
}

#[test]
fn original_values_are_found_whichever_table_is_written_first() {
    // The tables are written one after the other, and an identifier may be collected only after
    // the table that leaks it was written: the hits must not depend on the order.
    for people in ["a_people", "z_people"] {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        std::fs::create_dir(&input).unwrap();
        std::fs::write(
            input.join(format!("{people}.csv")),
            "Id,MRN,SEX\nc0ffee-17,zq40411,F\nbeef-0042,zq77310,M\n",
        )
        .unwrap();
        // A run of one subject repeats its leaked value; the note leaks an MRN among words.
        std::fs::write(
            input.join("m_visits.csv"),
            "PERSON,WHO,NOTE\nc0ffee-17,c0ffee-17,seen\nc0ffee-17,c0ffee-17,seen\nbeef-0042,x,ref zq77310 called\nbeef-0042,c0ffee-17,ok\n",
        )
        .unwrap();
        let yaml = format!("name: leaky\ninput_classification: restricted/phi\noutput_classification: internal\nreference_year: 2025\ntables:\n  {people}:\n    columns: {{ Id: pseudonymize, MRN: drop, SEX: keep }}\n  m_visits:\n    columns: {{ PERSON: pseudonymize, WHO: keep, NOTE: scan_text }}\n");
        let p = Profile::from_yaml(&yaml, "leaky.yaml").unwrap();
        let r = sanitize(&p, &input, &tmp.path().join("out"), &approved(&p)).unwrap();
        assert!(!r.earned, "{people}");
        let visits = r.tables.iter().find(|t| t.table == "m_visits").unwrap();
        let hit = |col: &str| {
            visits
                .residual
                .iter()
                .find(|h| h.column == col && h.kind == Kind::OriginalValue)
                .map(|h| (h.count, h.lines.clone()))
        };
        assert_eq!(
            hit("WHO"),
            Some((3, vec![2, 3, 5])),
            "{people}: {:?}",
            visits.residual
        );
        assert_eq!(
            hit("NOTE"),
            Some((1, vec![4])),
            "{people}: {:?}",
            visits.residual
        );
        assert_eq!(
            r.residual_total.get(&Kind::OriginalValue),
            Some(&4),
            "{people}"
        );
    }
}

#[test]
fn a_kept_high_distinctness_column_is_identifying_but_measurements_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut body = String::from("REF,AMOUNT,KIND\n");
    for i in 0..40 {
        body.push_str(&format!(
            "acct{i:05},{}.{:02},{}\n",
            100 + i,
            i,
            if i % 2 == 0 { "a" } else { "b" }
        ));
    }
    std::fs::write(input.join("ledger.csv"), body).unwrap();
    let yaml = "name: d\ninput_classification: restricted/phi\noutput_classification: internal\nreference_year: 2025\ntables:\n  ledger:\n    columns: { REF: keep, AMOUNT: keep, KIND: keep }\n";
    let p = Profile::from_yaml(yaml, "d.yaml").unwrap();
    let r = sanitize(&p, &input, &tmp.path().join("out"), &approved(&p)).unwrap();
    let flagged: Vec<&str> = r.tables[0]
        .identifying
        .iter()
        .map(|c| c.column.as_str())
        .collect();
    assert_eq!(flagged, ["REF"], "{:?}", r.tables[0].identifying);
    assert!(!r.earned);
}

#[test]
fn no_profile_may_lift_export_control_contractual_tags_or_ip() {
    for tag in ["export-controlled", "contractual:acme", "ip"] {
        let yaml = format!(
            "name: x\ninput_classification: restricted/phi\noutput_classification: public\nlifts: [phi, {tag}]\nreference_year: 2025\ntables:\n  t:\n    columns: {{ A: drop }}\n"
        );
        let e = Profile::from_yaml(&yaml, "x.yaml").unwrap_err();
        assert!(
            matches!(&e, SanitizeError::ProfileInvalid { field, .. } if field == "lifts[1]"),
            "{e}"
        );
        assert!(e.to_string().contains("can never be lifted"), "{e}");
    }
    assert_eq!(Profile::hipaa_safe_harbor().unwrap().lifts, ["phi", "pii"]);
}

/// Actions a random profile picks from, per column.
const ACTIONS: [&str; 9] = [
    "drop",
    "pseudonymize",
    "keep",
    "code",
    "scan_text",
    "{ noise: 0.05 }",
    "zip3",
    "age_cap",
    "{ generalize_date: year }",
];

fn csv_cells(text: &str) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..proptest::prelude::ProptestConfig::default() })]

    /// Random profiles (any action on any column, any lower target, approved for the source):
    /// whenever one earns a lower classification, no original value of an identifier column
    /// (SSN, names, address, licence and passport numbers) is a cell of its output.
    #[test]
    fn a_random_profile_earns_only_when_no_identifier_value_survives(
        picks in proptest::collection::vec(0usize..1000, 32),
        target in 0usize..3,
    ) {
        let Some(data) = synthea() else { return Ok(()) };
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        std::fs::create_dir(&input).unwrap();
        std::fs::copy(data.join("patients.csv"), input.join("patients.csv")).unwrap();
        let text = std::fs::read_to_string(input.join("patients.csv")).unwrap();
        let rows = csv_cells(&text);
        let header = rows[0].clone();
        let mut yaml = format!(
            "name: random\ninput_classification: restricted/phi\noutput_classification: {}\nlifts: [phi]\nreference_year: 2025\ntables:\n  patients:\n    columns:\n",
            ["public", "internal", "confidential"][target]
        );
        // Each column gets an action its values admit (a date transform on dates, noise on
        // numbers, zip3 on the ZIP), or one of those every column admits.
        let first = &rows[1];
        for (i, c) in header.iter().enumerate() {
            let v = first.get(i).map_or("", String::as_str);
            let mut fits: Vec<&str> = ACTIONS[..5].to_vec();
            if v.len() >= 10 && v.as_bytes()[4] == b'-' && v.as_bytes()[7] == b'-' {
                fits.extend(["age_cap", "{ generalize_date: year }"]);
            } else if c == "ZIP" {
                fits.push("zip3");
            } else if !v.is_empty() && v.parse::<f64>().is_ok() {
                fits.push("{ noise: 0.05 }");
            }
            // Mostly protective choices, so that some profiles earn and their output is judged;
            // one pick in ten is anything the column admits.
            let pick = picks[i % picks.len()];
            let action = if pick % 10 == 0 {
                fits[pick % fits.len()]
            } else {
                let strong: Vec<&str> = fits.iter().copied().filter(|a| !matches!(*a, "keep" | "code" | "scan_text")).collect();
                strong[pick % strong.len()]
            };
            yaml.push_str(&format!("      {c}: {action}\n"));
        }
        let Ok(p) = Profile::from_yaml(&yaml, "random.yaml") else { return Ok(()) };
        let out = tmp.path().join("out");
        let Ok(r) = sanitize(&p, &input, &out, &approved(&p)) else { return Ok(()) };
        if r.earned {
            let identifiers: std::collections::BTreeSet<String> = ["SSN", "FIRST", "LAST", "ADDRESS", "DRIVERS", "PASSPORT", "MAIDEN"]
                .iter()
                .filter_map(|c| header.iter().position(|h| h == c))
                .flat_map(|i| rows.iter().skip(1).filter_map(move |r| r.get(i).cloned()))
                .filter(|v| v.len() >= 3)
                .collect();
            let written = std::fs::read_to_string(out.join("patients.csv")).unwrap();
            for row in csv_cells(&written) {
                for cell in row {
                    proptest::prop_assert!(!identifiers.contains(&cell), "profile earned with `{cell}` in its output:\n{yaml}");
                }
            }
        }
    }
}
