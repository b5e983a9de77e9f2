//! Loading the example fleet and jobs, and bad input: each error names the file, the line and the field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use tidegate_model::{load_fleet, load_job, load_jobs_dir, JobProfile, LoadError, ZoneScope};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Copies the example fleet into a temp dir so a test can break one file.
fn fleet_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&examples().join("fleet"), dir.path());
    dir
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

fn only_error(dir: &Path) -> LoadError {
    let errs = load_fleet(dir)
        .expect_err("the broken fleet must not load")
        .0;
    assert_eq!(errs.len(), 1, "expected exactly one error, got: {errs:#?}");
    errs.into_iter().next().unwrap()
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
    (text.lines().position(|l| l.contains(needle)).unwrap() + 1) as u64
}

#[test]
fn example_fleet_and_jobs_load() {
    let fleet = load_fleet(&examples().join("fleet")).unwrap();
    assert_eq!(fleet.zones.len(), 5);
    assert_eq!(fleet.pool_count(), 10);
    assert_eq!(fleet.fleet_hash.len(), 64);
    let tiers: Vec<&str> = fleet.zones.iter().map(|z| z.tier.as_str()).collect();
    for t in ["private-onprem", "private-cloud", "public", "edge"] {
        assert!(tiers.contains(&t), "example fleet lacks a {t} zone");
    }
    let jobs = load_jobs_dir(&examples().join("jobs"), &fleet).unwrap();
    assert!(jobs.len() >= 6);
}

#[test]
fn unknown_field_names_file_and_line() {
    let dir = fleet_copy();
    let zone = dir.path().join("zones/public-eu.yaml");
    replace(
        &zone,
        "region: eu-central-1",
        "region: eu-central-1\nregoin: typo",
    );
    match only_error(dir.path()) {
        LoadError::Syntax {
            path,
            line,
            message,
            ..
        } => {
            assert_eq!(path, zone);
            assert_eq!(line, line_of(&zone, "regoin"));
            assert!(
                message.contains("regoin"),
                "message should name the field: {message}"
            );
        }
        e => panic!("expected a syntax error, got {e}"),
    }
}

#[test]
fn wrong_type_names_file_and_line() {
    let dir = fleet_copy();
    let zone = dir.path().join("zones/hospital-onprem.yaml");
    replace(&zone, "gpus: 32", "gpus: thirty-two");
    match only_error(dir.path()) {
        LoadError::Syntax { path, line, .. } => {
            assert_eq!(path, zone);
            assert_eq!(line, line_of(&zone, "thirty-two"));
        }
        e => panic!("expected a syntax error, got {e}"),
    }
}

#[test]
fn unknown_classification_level_names_field() {
    let dir = fleet_copy();
    let zone = dir.path().join("zones/edge-clinic.yaml");
    replace(
        &zone,
        "max_classification: confidential",
        "max_classification: secret",
    );
    let e = only_error(dir.path());
    let text = e.to_string();
    assert_eq!(e.path(), zone);
    assert_eq!(e.line(), Some(line_of(&zone, "secret")));
    assert!(
        text.contains("max_classification")
            && text.contains("secret")
            && text.contains("restricted"),
        "{text}"
    );
}

#[test]
fn duplicate_zone_names_are_an_error() {
    let dir = fleet_copy();
    let dup = dir.path().join("zones/zz-duplicate.yaml");
    fs::copy(dir.path().join("zones/public-us.yaml"), &dup).unwrap();
    let e = only_error(dir.path());
    assert_eq!(e.path(), dup);
    assert_eq!(e.line(), Some(line_of(&dup, "name: public-us")));
    assert!(
        e.to_string().contains("duplicate zone name `public-us`"),
        "{e}"
    );
}

#[test]
fn duplicate_pool_names_are_an_error() {
    let dir = fleet_copy();
    let zone = dir.path().join("zones/hospital-onprem.yaml");
    replace(&zone, "- name: a100", "- name: h100");
    let e = only_error(dir.path());
    assert!(
        e.to_string().contains("pools[1].name") && e.to_string().contains("duplicate pool name"),
        "{e}"
    );
}

#[test]
fn unknown_dataset_home_zone_is_an_error() {
    let dir = fleet_copy();
    let ds = dir.path().join("datasets.yaml");
    replace(&ds, "home_zone: private-cloud", "home_zone: private-clod");
    let e = only_error(dir.path());
    assert_eq!(e.line(), Some(line_of(&ds, "private-clod")));
    assert!(e.to_string().contains("datasets[3].home_zone"), "{e}");
}

fn job_text() -> String {
    fs::read_to_string(examples().join("jobs/sepsis-train.yaml")).unwrap()
}

fn job_error(text: &str) -> Vec<LoadError> {
    let fleet = load_fleet(&examples().join("fleet")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.yaml");
    fs::write(&path, text).unwrap();
    load_job(&path, &fleet).expect_err("job must not load").0
}

#[test]
fn unknown_zone_in_label_names_line() {
    let text = job_text().replace(
        "allowed_execution_zone: private",
        "allowed_execution_zone: mars-base",
    );
    let errs = job_error(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let line = (text.lines().position(|l| l.contains("mars-base")).unwrap() + 1) as u64;
    assert_eq!(errs[0].line(), Some(line));
    let msg = errs[0].to_string();
    assert!(
        msg.contains("metadata.labels.allowed_execution_zone") && msg.contains("mars-base"),
        "{msg}"
    );
}

#[test]
fn unknown_level_in_label_names_line() {
    let text = job_text().replace(
        "data_classification: restricted",
        "data_classification: top-secret",
    );
    let errs = job_error(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0]
        .to_string()
        .contains("unknown classification level `top-secret`"));
}

#[test]
fn unknown_job_field_and_wrong_type() {
    let errs =
        job_error(&job_text().replace("  budget_class: research", "  budget_clas: research"));
    assert!(
        matches!(&errs[0], LoadError::Syntax { message, .. } if message.contains("budget_clas")),
        "{errs:#?}"
    );
    let errs = job_error(&job_text().replace("gpus: 16", "gpus: [16]"));
    assert!(
        matches!(&errs[0], LoadError::Syntax { line, .. } if *line > 0),
        "{errs:#?}"
    );
}

#[test]
fn unknown_dataset_and_bad_label_value() {
    let text = job_text()
        .replace("ehr-raw@2026-10", "ehr-raw@1999")
        .replace("burst_eligible: false", "burst_eligible: maybe");
    let errs = job_error(&text);
    assert_eq!(errs.len(), 2, "both problems are reported: {errs:#?}");
}

#[test]
fn stricter_classification_wins_and_is_explained() {
    let fleet = load_fleet(&examples().join("fleet")).unwrap();
    let job = load_job(&examples().join("jobs/mislabeled-ct.yaml"), &fleet).unwrap();
    let p = JobProfile::resolve(&job, &fleet).unwrap();
    assert_eq!(fleet.scheme.level_name(p.effective.level), "restricted");
    assert!(p.attrs.private_only);
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("less strict") && n.contains("ct-imaging@v4")),
        "{:?}",
        p.notes
    );
    // A label can make a job stricter than its data, never looser.
    let job = load_job(&examples().join("jobs/sepsis-train.yaml"), &fleet).unwrap();
    let p = JobProfile::resolve(&job, &fleet).unwrap();
    assert_eq!(p.attrs.scope, ZoneScope::Private);
    assert!(!p.attrs.burst_eligible);
}

#[test]
fn a_local_backend_names_its_job_user_and_never_root() {
    let dir = fleet_copy();
    let zone = dir.path().join("zones/hospital-onprem.yaml");
    let slurm = "backend:\n  kind: slurm\n  partition: gpu\n  account: research\n";
    replace(
        &zone,
        slurm,
        "backend:\n  kind: local\n  run_as: tidegate-jobs\n",
    );
    let fleet = load_fleet(dir.path()).unwrap();
    assert_eq!(
        fleet.zone("hospital-onprem").unwrap().backend,
        tidegate_model::Backend::Local {
            workdir: None,
            run_as: Some("tidegate-jobs".into())
        }
    );
    for (bad, says) in [
        ("root", "never run as root"),
        ("'-o'", "not a user name"),
        ("'0'", "not a user name"),
    ] {
        replace(
            &zone,
            "backend:\n  kind: local\n  run_as: tidegate-jobs\n",
            &format!("backend:\n  kind: local\n  run_as: {bad}\n"),
        );
        match only_error(dir.path()) {
            LoadError::Invalid {
                origin,
                field,
                message,
            } => {
                assert_eq!(origin.file.as_ref(), zone.as_path());
                assert_eq!(field, "backend.run_as");
                assert!(message.contains(says), "{bad}: {message}");
            }
            e => panic!("expected an invalid run_as, got {e}"),
        }
        replace(
            &zone,
            &format!("backend:\n  kind: local\n  run_as: {bad}\n"),
            "backend:\n  kind: local\n  run_as: tidegate-jobs\n",
        );
    }
}

#[test]
fn a_deadline_that_does_not_parse_is_refused_naming_the_field() {
    let text = job_text().replace("\"2026-12-15T00:00:00Z\"", "\"next friday\"");
    assert!(text.contains("next friday"));
    let errs = job_error(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let msg = errs[0].to_string();
    assert!(
        msg.contains("spec.deadline") && msg.contains("next friday"),
        "{msg}"
    );
}

#[test]
fn a_deadline_is_read_once_into_a_time_and_written_back_as_the_manifest_gave_it() {
    let text = job_text();
    assert!(text.contains("\"2026-12-15T00:00:00Z\""));
    let fleet = load_fleet(&examples().join("fleet")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.yaml");
    fs::write(&path, &text).unwrap();
    let spec = load_job(&path, &fleet).unwrap();
    assert_eq!(
        spec.deadline,
        Some(tidegate_vocab::Timestamp(1_797_292_800_000))
    );
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["deadline"], "2026-12-15T00:00:00Z");
}

#[test]
fn a_command_element_that_is_not_a_string_is_refused_naming_the_element() {
    let ok = "command: [python, train.py, --config, sepsis.yaml]";
    assert!(job_text().contains(ok));
    for (bad, index, what) in [
        ("command: [python, train.py, 3, sepsis.yaml]", 2, "a number"),
        ("command: [python, true]", 1, "a boolean"),
        ("command: [python, train.py, [a, b]]", 2, "a list"),
        ("command: [{run: x}]", 0, "a mapping"),
        ("command: [python, ~]", 1, "null"),
    ] {
        let text = job_text().replace(ok, bad);
        let errs = job_error(&text);
        assert_eq!(errs.len(), 1, "{bad}: {errs:#?}");
        let line = (text.lines().position(|l| l.contains(bad)).unwrap() + 1) as u64;
        assert_eq!(errs[0].line(), Some(line), "{bad}");
        match &errs[0] {
            LoadError::Invalid { field, message, .. } => {
                assert_eq!(field, &format!("spec.command[{index}]"), "{bad}");
                assert!(message.contains(what), "{bad}: {message}");
            }
            e => panic!("{bad}: expected an invalid command element, got {e}"),
        }
    }
    // Quoted, the same values are strings and load.
    let text = job_text().replace(ok, "command: [python, '3', 'true']");
    let fleet = load_fleet(&examples().join("fleet")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.yaml");
    fs::write(&path, &text).unwrap();
    let job = load_job(&path, &fleet).unwrap();
    assert_eq!(job.command, ["python", "3", "true"]);
}

#[test]
fn a_kubernetes_zone_waits_for_admission_as_long_as_it_says_within_bounds() {
    let dir = fleet_copy();
    let zone = dir.path().join("zones/public-us.yaml");
    let wait_in = |fleet: &tidegate_model::Fleet, z: &str| match &fleet.zone(z).unwrap().backend {
        tidegate_model::Backend::Kubernetes {
            admission_timeout_s,
            ..
        } => *admission_timeout_s,
        other => panic!("{z} is not a Kubernetes zone: {other:?}"),
    };
    let wait = |fleet: &tidegate_model::Fleet| wait_in(fleet, "public-us");
    let text = fs::read_to_string(&zone).unwrap();
    assert!(!text.contains("admission_timeout_s"), "{text}");
    let fleet = load_fleet(dir.path()).unwrap();
    assert_eq!(wait(&fleet), tidegate_model::DEFAULT_ADMISSION_TIMEOUT_S);
    assert_eq!(
        wait_in(&fleet, "public-eu"),
        300,
        "as the example writes it"
    );
    assert_eq!(tidegate_model::DEFAULT_ADMISSION_TIMEOUT_S, 600);
    replace(
        &zone,
        "  kind: kubernetes\n",
        "  kind: kubernetes\n  admission_timeout_s: 120\n",
    );
    assert_eq!(wait(&load_fleet(dir.path()).unwrap()), 120);
    for bad in ["0", "86401"] {
        let text = fs::read_to_string(&zone).unwrap();
        let broken = set_value(&text, "admission_timeout_s: ", bad);
        fs::write(&zone, broken).unwrap();
        match only_error(dir.path()) {
            LoadError::Invalid {
                origin,
                field,
                message,
            } => {
                assert_eq!(origin.file.as_ref(), zone.as_path());
                assert_eq!(field, "backend.admission_timeout_s");
                assert!(
                    message.contains("between 1 and 86400") && message.contains(bad),
                    "{bad}: {message}"
                );
            }
            e => panic!("expected an invalid admission_timeout_s, got {e}"),
        }
    }
}

/// `text` with the value after `key` (up to the end of its line) replaced by `value`.
fn set_value(text: &str, key: &str, value: &str) -> String {
    let start = text.find(key).unwrap() + key.len();
    let end = start + text[start..].find('\n').unwrap();
    format!("{}{value}{}", &text[..start], &text[end..])
}

#[test]
fn effective_labels_are_complete_even_where_the_spec_omits_them() {
    let fleet = load_fleet(&examples().join("fleet")).unwrap();
    let labels = |file: &str| {
        let job = load_job(&examples().join("jobs").join(file), &fleet).unwrap();
        JobProfile::resolve(&job, &fleet)
            .unwrap()
            .effective_labels(&fleet.scheme)
    };
    let get = |m: &std::collections::BTreeMap<String, String>, k: &str| m[k].clone();
    // Labelled internal and burst-eligible, no zone label, but it reads restricted imaging: the
    // data decides all three.
    let ct = labels("mislabeled-ct.yaml");
    assert_eq!(get(&ct, "data_classification"), "restricted");
    assert_eq!(get(&ct, "allowed_execution_zone"), "private");
    assert_eq!(get(&ct, "burst_eligible"), "false");
    assert_eq!(ct.len(), 3, "{ct:?}");
    // Only burst_eligible written: the level comes from the public input, the zone is
    // unrestricted by label.
    let lit = labels("literature-finetune.yaml");
    assert_eq!(get(&lit, "data_classification"), "public");
    assert_eq!(get(&lit, "allowed_execution_zone"), "any");
    assert_eq!(get(&lit, "burst_eligible"), "true");
    // Only a zone label written: burst eligibility defaults to false.
    let edge = labels("triage-edge.yaml");
    assert_eq!(get(&edge, "allowed_execution_zone"), "edge");
    assert_eq!(get(&edge, "burst_eligible"), "false");
}
