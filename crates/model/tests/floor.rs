//! The safety floor in the model: built-in levels and tags cannot be weakened by `fleet.yaml`,
//! datasets cannot be homed where their data may not be, names are DNS-1123 labels, near misses
//! of reserved job labels are errors, and export-controlled work without a known origin is held
//! at home. Each error names the file, the line and the field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use tidegate_model::{
    load_fleet, parse_job, Classification, FloorSubject, JobProfile, LoadError, Scheme, Tier,
};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

fn fleet_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&examples().join("fleet"), dir.path());
    dir
}

fn replace(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} does not contain {from:?}",
        path.display()
    );
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn line_of(path: &Path, needle: &str) -> u64 {
    let text = fs::read_to_string(path).unwrap();
    (text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?}"))
        + 1) as u64
}

/// The fleet must not load; returns its errors.
fn errors(dir: &Path) -> Vec<LoadError> {
    load_fleet(dir).expect_err("the fleet must not load").0
}

/// Exactly one error, at `file:line`, whose text names `field` and contains every `words`.
fn assert_one(dir: &Path, file: &Path, line: u64, field: &str, words: &[&str]) {
    let errs = errors(dir);
    assert_eq!(errs.len(), 1, "expected exactly one error, got: {errs:#?}");
    let e = &errs[0];
    let text = e.to_string();
    assert_eq!(e.path(), file, "{text}");
    assert_eq!(e.line(), Some(line), "{text}");
    assert!(text.contains(field), "{text} should name {field}");
    for w in words {
        assert!(text.contains(w), "{text} should say {w}");
    }
}

// ---- Case 4: the built-in levels and tags cannot be weakened ----------------------------------

#[test]
fn dropping_private_only_from_restricted_is_an_error_with_line() {
    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    replace(
        &f,
        "    - name: restricted\n      private_only: true\n",
        "    - name: restricted\n",
    );
    assert_one(
        dir.path(),
        &f,
        line_of(&f, "- name: restricted"),
        "classification.levels",
        &["restricted", "private_only"],
    );
}

#[test]
fn dropping_private_only_from_phi_or_pci_is_an_error_with_line() {
    for tag in ["phi", "pci"] {
        let dir = fleet_copy();
        let f = dir.path().join("fleet.yaml");
        replace(
            &f,
            &format!("    - name: {tag}\n      private_only: true\n"),
            &format!("    - name: {tag}\n      private_only: false\n"),
        );
        assert_one(
            dir.path(),
            &f,
            line_of(&f, &format!("- name: {tag}")),
            "classification.tags",
            &[tag, "private_only"],
        );
    }
}

#[test]
fn dropping_stays_in_jurisdiction_or_a_certification_is_an_error() {
    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    replace(&f, "      stays_in_jurisdiction: true\n", "");
    assert_one(
        dir.path(),
        &f,
        line_of(&f, "- name: export-controlled"),
        "classification.tags",
        &["export-controlled", "stays_in_jurisdiction"],
    );

    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    replace(
        &f,
        "      requires_certifications: [hipaa-baa]\n",
        "      requires_certifications: []\n",
    );
    assert_one(
        dir.path(),
        &f,
        line_of(&f, "- name: phi"),
        "classification.tags",
        &["phi", "hipaa-baa"],
    );
}

#[test]
fn reordering_or_removing_builtin_levels_is_an_error() {
    // restricted listed below confidential.
    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    let text = fs::read_to_string(&f).unwrap();
    let conf = "    - name: confidential\n      description: business or de-identified data under contractual controls\n";
    let restr = "    - name: restricted\n      private_only: true\n      description: raw regulated data (PHI, cardholder data)\n";
    assert!(text.contains(&format!("{conf}{restr}")));
    fs::write(
        &f,
        text.replace(&format!("{conf}{restr}"), &format!("{restr}{conf}")),
    )
    .unwrap();
    let errs = errors(dir.path());
    assert!(
        errs.iter()
            .any(|e| e.line() == Some(line_of(&f, "- name: restricted"))
                && e.to_string().contains("classification.levels")
                && e.to_string().contains("must stay above")),
        "{errs:#?}"
    );

    // restricted removed.
    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    replace(&f, restr, "");
    let errs = errors(dir.path());
    assert!(
        errs.iter().any(|e| e.path() == f
            && e.line() == Some(line_of(&f, "- name: public"))
            && e.to_string().contains("classification.levels")
            && e.to_string()
                .contains("built-in level `restricted` is missing")),
        "{errs:#?}"
    );
}

#[test]
fn a_fleet_may_add_and_tighten() {
    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    replace(
        &f,
        "      description: raw regulated data (PHI, cardholder data)\n",
        "      description: raw regulated data (PHI, cardholder data)\n    - name: secret\n      description: above restricted\n",
    );
    replace(
        &f,
        "    - name: ip\n      requires_certifications: [soc2]\n",
        "    - name: ip\n      private_only: true\n      requires_certifications: [soc2, iso27001]\n",
    );
    replace(
        &f,
        "    - name: deidentified\n",
        "    - name: trade-union\n      private_only: true\n    - name: deidentified\n",
    );
    let fleet = load_fleet(dir.path()).unwrap();
    let s = &fleet.scheme;
    assert!(s.floor_problems().is_empty());
    // A level above restricted is private-only even without saying so.
    let secret = Classification {
        level: s.level_rank("secret").unwrap(),
        ..Classification::default()
    };
    assert!(s.private_only(&secret));
    let ip = Classification {
        tags: BTreeSet::from(["ip".to_string()]),
        ..Classification::default()
    };
    assert!(s.private_only(&ip));
    assert!(s.required_certifications(&ip).contains("iso27001"));
}

#[test]
fn a_builtin_tag_left_out_keeps_its_meaning() {
    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    replace(
        &f,
        "    - name: phi\n      private_only: true\n      requires_certifications: [hipaa-baa]\n      description: protected health information (HIPAA)\n",
        "",
    );
    let fleet = load_fleet(dir.path()).unwrap();
    let phi = Classification {
        tags: BTreeSet::from(["phi".to_string()]),
        ..Classification::default()
    };
    assert!(fleet.scheme.private_only(&phi));
    assert!(fleet
        .scheme
        .required_certifications(&phi)
        .contains("hipaa-baa"));
}

#[test]
fn a_scheme_built_in_code_still_keeps_the_floor() {
    let mut s = Scheme::default();
    assert!(s.floor_problems().is_empty());
    for l in &mut s.levels {
        l.private_only = false;
    }
    for t in &mut s.tags {
        t.private_only = false;
        t.stays_in_jurisdiction = false;
        t.requires_certifications.clear();
    }
    s.levels.swap(2, 3);
    let problems = s.floor_problems();
    assert!(problems
        .iter()
        .any(|p| p.subject == FloorSubject::Level("restricted".into())
            && p.message.contains("private_only")));
    assert!(problems
        .iter()
        .any(|p| p.message.contains("must stay above")));
    assert!(problems
        .iter()
        .any(|p| p.subject == FloorSubject::Tag("export-controlled".into())));
    // The consequences read by placement hold whatever the definitions say.
    let restricted = Classification {
        level: s.level_rank("restricted").unwrap(),
        ..Classification::default()
    };
    assert!(s.private_only(&restricted));
    let tagged = |t: &str| Classification {
        tags: BTreeSet::from([t.to_string()]),
        ..Classification::default()
    };
    assert!(s.private_only(&tagged("phi")) && s.private_only(&tagged("pci")));
    assert!(s.stays_in_jurisdiction(&tagged("export-controlled")));
    assert!(s
        .required_certifications(&tagged("phi"))
        .contains("hipaa-baa"));
}

// ---- Case 9: datasets homed only where their data may be ----------------------------------------

#[test]
fn restricted_data_homed_in_a_public_or_edge_zone_is_an_error() {
    for zone in ["public-us", "edge-clinic"] {
        let dir = fleet_copy();
        let ds = dir.path().join("datasets.yaml");
        // ehr-raw (restricted, PHI, US) is the first dataset.
        replace(
            &ds,
            "    home_zone: hospital-onprem\n",
            &format!("    home_zone: {zone}\n"),
        );
        let errs = errors(dir.path());
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let text = errs[0].to_string();
        assert_eq!(errs[0].path(), ds);
        assert_eq!(
            errs[0].line(),
            Some(line_of(&ds, &format!("home_zone: {zone}"))),
            "{text}"
        );
        assert!(
            text.contains("datasets[0].home_zone") && text.contains("private-only"),
            "{text}"
        );
    }
}

#[test]
fn data_homed_outside_its_residency_or_above_the_ceiling_is_an_error() {
    // eu-trial-cohort (EU residency) moved to the US public zone.
    let dir = fleet_copy();
    let ds = dir.path().join("datasets.yaml");
    replace(
        &ds,
        "    home_zone: public-eu\n",
        "    home_zone: public-us\n",
    );
    let errs = errors(dir.path());
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].line(), Some(line_of(&ds, "home_zone: public-us")));
    assert!(
        errs[0].to_string().contains("datasets[5].home_zone")
            && errs[0].to_string().contains("residency"),
        "{}",
        errs[0]
    );

    // A zone whose ceiling is below the data's level.
    let dir = fleet_copy();
    let z = dir.path().join("zones/private-cloud.yaml");
    let text = fs::read_to_string(&z).unwrap();
    let ceiling = text
        .lines()
        .find(|l| l.starts_with("max_classification:"))
        .unwrap()
        .to_string();
    fs::write(&z, text.replace(&ceiling, "max_classification: internal")).unwrap();
    let ds = dir.path().join("datasets.yaml");
    replace(&ds, "      level: public\n", "      level: confidential\n");
    let errs = errors(dir.path());
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(
        errs[0].line(),
        Some(line_of(&ds, "home_zone: private-cloud"))
    );
    assert!(errs[0].to_string().contains("ceiling"), "{}", errs[0]);
}

#[test]
fn home_zone_rule_is_one_pure_function() {
    let fleet = load_fleet(&examples().join("fleet")).unwrap();
    let s = &fleet.scheme;
    let restricted_phi = Classification {
        level: s.level_rank("restricted").unwrap(),
        tags: BTreeSet::from(["phi".to_string()]),
        residency: Some(BTreeSet::from(["US".to_string()])),
        retention: None,
    };
    for z in &fleet.zones {
        let problem = s.home_zone_problem(&restricted_phi, z);
        assert_eq!(
            problem.is_none(),
            z.tier.is_private() && z.jurisdiction == "US",
            "{}: {problem:?}",
            z.name
        );
    }
    let public = Classification::default();
    let edge = fleet.zones.iter().find(|z| z.tier == Tier::Edge).unwrap();
    assert_eq!(s.home_zone_problem(&public, edge), None);
}

// ---- Case 12: names are DNS-1123 labels ------------------------------------------------------------

#[test]
fn a_look_alike_zone_name_is_an_error() {
    let dir = fleet_copy();
    let z = dir.path().join("zones/zz-lookalike.yaml");
    // "hospital-onprem" with a Cyrillic "о".
    let text = fs::read_to_string(dir.path().join("zones/public-us.yaml")).unwrap();
    fs::write(
        &z,
        text.replace("name: public-us", "name: h\u{43e}spital-onprem"),
    )
    .unwrap();
    assert_one(
        dir.path(),
        &z,
        line_of(&z, "spital-onprem"),
        "name",
        &["not a valid name", "63"],
    );
}

#[test]
fn bad_pool_team_and_dataset_names_are_errors() {
    let dir = fleet_copy();
    let z = dir.path().join("zones/hospital-onprem.yaml");
    replace(&z, "- name: a100", "- name: A100");
    assert_one(
        dir.path(),
        &z,
        line_of(&z, "- name: A100"),
        "pools[1].name",
        &["A100"],
    );

    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    replace(&f, "  - name: icu-ml\n", "  - name: icu_ml\n");
    assert_one(
        dir.path(),
        &f,
        line_of(&f, "name: icu_ml"),
        "teams[0].name",
        &["icu_ml"],
    );

    let dir = fleet_copy();
    let ds = dir.path().join("datasets.yaml");
    replace(&ds, "  - name: ehr-deid\n", "  - name: \"ehr-deid \"\n");
    assert_one(
        dir.path(),
        &ds,
        line_of(&ds, "ehr-deid "),
        "datasets[1].name",
        &["ehr-deid"],
    );

    let dir = fleet_copy();
    let ds = dir.path().join("datasets.yaml");
    replace(&ds, "    owner: radiology\n", "    owner: Radiology\n");
    assert_one(
        dir.path(),
        &ds,
        line_of(&ds, "owner: Radiology"),
        "datasets[2].owner",
        &["Radiology"],
    );
}

#[test]
fn name_at_version_forms_still_load() {
    let fleet = load_fleet(&examples().join("fleet")).unwrap();
    let versions: Vec<&str> = fleet.datasets.iter().map(|d| d.version.as_str()).collect();
    assert!(
        versions.contains(&"2026-10") && versions.contains(&"v4"),
        "{versions:?}"
    );
}

// ---- Case 10: near misses of reserved labels ------------------------------------------------------

fn job_text() -> String {
    fs::read_to_string(examples().join("jobs/sepsis-train.yaml")).unwrap()
}

fn job_errors(text: &str) -> Vec<LoadError> {
    let fleet = load_fleet(&examples().join("fleet")).unwrap();
    parse_job(Path::new("job.yaml"), text, &fleet)
        .expect_err("job must not load")
        .0
}

#[test]
fn misspelt_reserved_label_keys_are_errors_naming_the_line() {
    let cases = [
        (
            "allowed_execution_zone: private",
            "Allowed_Execution_Zone: private",
        ),
        (
            "allowed_execution_zone: private",
            "allowed-execution-zone: private",
        ),
        (
            "allowed_execution_zone: private",
            "allowed.execution.zone: private",
        ),
        (
            "allowed_execution_zone: private",
            "\"allowed_execution_zone \": private",
        ),
        (
            "data_classification: restricted",
            "data-classification: restricted",
        ),
        (
            "data_classification: restricted",
            "DATA_CLASSIFICATION: restricted",
        ),
        ("burst_eligible: false", "Burst_Eligible: false"),
        ("burst_eligible: false", "\" burst_eligible\": false"),
        // A typo or a plural, and a key in another script.
        (
            "allowed_execution_zone: private",
            "allowed_execution_zones: private",
        ),
        (
            "allowed_execution_zone: private",
            "alowed_execution_zone: private",
        ),
        (
            "data_classification: restricted",
            "data_classificat\u{456}on: restricted",
        ),
    ];
    for (from, to) in cases {
        let text = job_text().replace(from, to);
        let errs = job_errors(&text);
        assert_eq!(errs.len(), 1, "{to}: {errs:#?}");
        let line = (text.lines().position(|l| l.contains(to)).unwrap() + 1) as u64;
        assert_eq!(errs[0].line(), Some(line), "{to}: {}", errs[0]);
        let msg = errs[0].to_string();
        let reserved = from.split(':').next().unwrap();
        assert!(
            msg.contains("metadata.labels") && msg.contains(&format!("`{reserved}`")),
            "{msg}"
        );
    }
    // Other labels are still kept as given.
    let fleet = load_fleet(&examples().join("fleet")).unwrap();
    let text = job_text().replace(
        "burst_eligible: false",
        "burst_eligible: false\n    cost-centre: icu",
    );
    let job = parse_job(Path::new("job.yaml"), &text, &fleet).unwrap();
    assert_eq!(
        job.labels.all.get("cost-centre").map(String::as_str),
        Some("icu")
    );
}

#[test]
fn a_look_alike_job_team_is_an_error() {
    let text = job_text().replace("team: icu-ml", "team: \u{456}cu-ml");
    let errs = job_errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].to_string().contains("metadata.team"), "{}", errs[0]);
}

// ---- Case 7: export-controlled work with no known origin ------------------------------------------

const EXPORT_JOB: &str = "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: firmware-sim
  team: biomed-engineering
  labels:
    burst_eligible: true
spec:
  kind: train
  resources:
    gpus: 1
    expected_hours: 1
  classification:
    level: confidential
    tags: [export-controlled]
";

#[test]
fn export_controlled_work_without_origin_is_held_at_home() {
    let mut fleet = load_fleet(&examples().join("fleet")).unwrap();
    assert_eq!(fleet.home_jurisdiction.as_deref(), Some("US"));
    let job = parse_job(Path::new("job.yaml"), EXPORT_JOB, &fleet).unwrap();
    let p = JobProfile::resolve(&job, &fleet).unwrap();
    assert!(p.attrs.stays_in_jurisdiction);
    assert!(p.attrs.private_only, "held to private zones");
    assert_eq!(
        p.attrs.origin_jurisdictions,
        BTreeSet::from(["US".to_string()])
    );
    assert!(
        p.notes.iter().any(|n| n.contains("home jurisdiction US")),
        "{:?}",
        p.notes
    );

    // With no home declared, the origin stays unknown (empty), which no zone passes.
    fleet.home_jurisdiction = None;
    let p = JobProfile::resolve(&job, &fleet).unwrap();
    assert!(p.attrs.stays_in_jurisdiction && p.attrs.origin_jurisdictions.is_empty());
    assert!(
        p.notes.iter().any(|n| n.contains("no home_jurisdiction")),
        "{:?}",
        p.notes
    );
}

#[test]
fn home_jurisdiction_is_read_from_fleet_yaml() {
    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    replace(&f, "home_jurisdiction: US\n", "home_jurisdiction: eu\n");
    assert_eq!(
        load_fleet(dir.path()).unwrap().home_jurisdiction.as_deref(),
        Some("EU")
    );
    replace(&f, "home_jurisdiction: eu\n", "");
    assert_eq!(load_fleet(dir.path()).unwrap().home_jurisdiction, None);
}

#[test]
fn a_job_declaring_export_control_over_uncontrolled_inputs_is_held_at_home() {
    // pubmed-abstracts is public data in private-cloud (US), not export-controlled: the
    // controlled data is the job's own, whose origin no input tells.
    let text = EXPORT_JOB.replace(
        "spec:\n  kind: train\n",
        "spec:\n  kind: train\n  inputs:\n    - dataset: pubmed-abstracts@2026-06\n",
    );
    let mut fleet = load_fleet(&examples().join("fleet")).unwrap();
    let job = parse_job(Path::new("job.yaml"), &text, &fleet).unwrap();
    let p = JobProfile::resolve(&job, &fleet).unwrap();
    assert!(p.attrs.private_only);
    assert_eq!(
        p.attrs.origin_jurisdictions,
        BTreeSet::from(["US".to_string()])
    );
    fleet.home_jurisdiction = None;
    let p = JobProfile::resolve(&job, &fleet).unwrap();
    assert!(
        p.attrs.origin_jurisdictions.is_empty(),
        "unknown origin: {:?}",
        p.attrs.origin_jurisdictions
    );
    // Controlled input data carries its own origin.
    let text = EXPORT_JOB.replace(
        "spec:\n  kind: train\n",
        "spec:\n  kind: train\n  inputs:\n    - dataset: scanner-firmware-traces@v1\n",
    );
    let job = parse_job(Path::new("job.yaml"), &text, &fleet).unwrap();
    let p = JobProfile::resolve(&job, &fleet).unwrap();
    assert_eq!(
        p.attrs.origin_jurisdictions,
        BTreeSet::from(["US".to_string()])
    );
}

#[test]
fn scheme_names_in_another_script_are_errors() {
    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    replace(
        &f,
        "    - name: deidentified\n",
        "    - name: ph\u{456}\n    - name: deidentified\n",
    );
    assert_one(
        dir.path(),
        &f,
        line_of(&f, "- name: ph\u{456}"),
        "classification.tags",
        &["must be ASCII"],
    );
}

#[test]
fn look_alikes_of_builtin_levels_and_tags_are_errors() {
    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    replace(
        &f,
        "    - name: deidentified\n",
        "    - name: PHI\n    - name: deidentified\n",
    );
    assert_one(
        dir.path(),
        &f,
        line_of(&f, "- name: PHI"),
        "classification.tags",
        &["PHI", "`phi`"],
    );
    let dir = fleet_copy();
    let f = dir.path().join("fleet.yaml");
    replace(
        &f,
        "    - name: public\n",
        "    - name: Restricted\n    - name: public\n",
    );
    assert_one(
        dir.path(),
        &f,
        line_of(&f, "- name: Restricted"),
        "classification.levels",
        &["Restricted", "`restricted`"],
    );
}

#[test]
fn a_job_with_more_inputs_than_its_evidence_can_name_is_refused() {
    let text = job_text();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("- dataset:"))
        .unwrap()
        .to_owned();
    let many = text.replacen(
        &format!("{line}\n"),
        &format!("{line}\n").repeat(tidegate_model::MAX_INPUTS + 1),
        1,
    );
    let errs = job_errors(&many);
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("spec.inputs") && e.to_string().contains("at most 14")),
        "{errs:#?}"
    );
    let enough = text.replacen(
        &format!("{line}\n"),
        &format!("{line}\n").repeat(tidegate_model::MAX_INPUTS),
        1,
    );
    let fleet = load_fleet(&examples().join("fleet")).unwrap();
    assert_eq!(
        parse_job(Path::new("job.yaml"), &enough, &fleet)
            .unwrap()
            .inputs
            .len(),
        tidegate_model::MAX_INPUTS
    );
}
