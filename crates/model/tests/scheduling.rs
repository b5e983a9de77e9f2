//! The fleet's scheduling sections (`teams:`, `job_classes:`, `failover:`): they load, a fleet
//! without them stays valid, and each bad value names the file, the line and the field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use tidegate_model::{load_fleet, load_fleet_with_scheduling, FailoverAction, LoadError};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

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

fn replace(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} does not contain {from:?}",
        path.display()
    );
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn line_of(path: &Path, needle: &str) -> u32 {
    let text = fs::read_to_string(path).unwrap();
    (text.lines().position(|l| l.contains(needle)).unwrap() + 1) as u32
}

fn only_invalid(dir: &Path) -> (u32, String, String) {
    let errs = load_fleet(dir)
        .expect_err("the broken fleet must not load")
        .0;
    assert_eq!(errs.len(), 1, "expected exactly one error, got: {errs:#?}");
    match errs.into_iter().next().unwrap() {
        LoadError::Invalid {
            origin,
            field,
            message,
        } => {
            assert!(
                origin.file.ends_with("fleet.yaml"),
                "{}",
                origin.file.display()
            );
            (origin.line, field, message)
        }
        e => panic!("expected an invalid-value error, got {e}"),
    }
}

#[test]
fn the_example_declares_teams_classes_and_a_hierarchy() {
    let (_, s) = load_fleet_with_scheduling(&examples().join("fleet")).unwrap();
    assert_eq!(s.teams.len(), 6);
    assert_eq!(
        s.team("radiology-ai").unwrap().nominal.get("public"),
        Some(&64)
    );
    assert_eq!(
        s.class("research").unwrap().budget.gpu_hours,
        Some(30_000.0)
    );
    assert_eq!(
        s.class("production").unwrap().min_deadline_slack_s,
        Some(3600.0)
    );
    let r = &s.failover.on_degraded[0];
    assert_eq!(r.action, FailoverAction::FailOver);
    assert_eq!(r.max_classification, Some(2)); // confidential
    assert!(r.covers("production") && !r.covers("batch"));
    assert!(s.failover.on_degraded.last().unwrap().covers("anything"));
}

#[test]
fn a_fleet_without_scheduling_sections_stays_valid() {
    let dir = fleet_copy();
    let p = dir.path().join("fleet.yaml");
    let text = fs::read_to_string(&p).unwrap();
    let cut = text.find("\n# Team quotas").unwrap();
    fs::write(&p, &text[..cut]).unwrap();
    let (_, s) = load_fleet_with_scheduling(dir.path()).unwrap();
    assert!(s.teams.is_empty() && s.classes.is_empty() && s.failover.on_degraded.is_empty());
}

#[test]
fn unknown_quota_scope_names_line_and_field() {
    let dir = fleet_copy();
    let p = dir.path().join("fleet.yaml");
    replace(&p, "nominal: { private: 32 }", "nominal: { mars-base: 32 }");
    let (line, field, message) = only_invalid(dir.path());
    assert_eq!(line, line_of(&p, "mars-base"));
    assert_eq!(field, "teams[3].nominal.mars-base");
    assert!(message.contains("hospital-onprem"), "{message}");
}

#[test]
fn bad_weight_budget_and_duplicate_team_are_errors() {
    let dir = fleet_copy();
    let p = dir.path().join("fleet.yaml");
    replace(&p, "weight: 2", "weight: 0");
    let (line, field, _) = only_invalid(dir.path());
    assert_eq!(
        (line, field.as_str()),
        (line_of(&p, "weight: 0"), "teams[0].weight")
    );

    let dir = fleet_copy();
    let p = dir.path().join("fleet.yaml");
    replace(&p, "budget: { money: 40000 }", "budget: { money: -1 }");
    let (line, field, _) = only_invalid(dir.path());
    assert_eq!(
        (line, field.as_str()),
        (line_of(&p, "money: -1"), "job_classes[2].budget.money")
    );

    let dir = fleet_copy();
    let p = dir.path().join("fleet.yaml");
    replace(&p, "name: clinical-trials", "name: icu-ml");
    let (_, field, message) = only_invalid(dir.path());
    assert_eq!(field, "teams[3].name");
    assert!(message.contains("duplicate"), "{message}");
}

#[test]
fn failover_rules_are_checked_against_classes_scopes_and_levels() {
    let dir = fleet_copy();
    let p = dir.path().join("fleet.yaml");
    replace(
        &p,
        "max_classification: confidential",
        "max_classification: top-secret",
    );
    let (line, field, message) = only_invalid(dir.path());
    assert_eq!(line, line_of(&p, "top-secret"));
    assert_eq!(field, "failover.on_degraded[0].max_classification");
    assert!(message.contains("restricted"), "{message}");

    let dir = fleet_copy();
    let p = dir.path().join("fleet.yaml");
    replace(&p, "shed: [batch]", "shed: [bacth]");
    let (line, field, message) = only_invalid(dir.path());
    assert_eq!(
        (line, field.as_str()),
        (line_of(&p, "bacth"), "failover.on_throttle.shed")
    );
    assert!(message.contains("bacth"), "{message}");

    let dir = fleet_copy();
    let p = dir.path().join("fleet.yaml");
    replace(&p, "to: [private]", "to: [moon]");
    let (line, field, _) = only_invalid(dir.path());
    assert_eq!(
        (line, field.as_str()),
        (line_of(&p, "moon"), "failover.on_degraded[1].to")
    );
}

#[test]
fn an_unknown_key_in_a_team_is_a_syntax_error_with_its_line() {
    let dir = fleet_copy();
    let p = dir.path().join("fleet.yaml");
    replace(&p, "borrowing_limit: 16", "borowing_limit: 16");
    let errs = load_fleet(dir.path()).unwrap_err().0;
    match &errs[0] {
        LoadError::Syntax { line, message, .. } => {
            assert_eq!(*line, u64::from(line_of(&p, "borowing_limit")));
            assert!(message.contains("borowing_limit"), "{message}");
        }
        e => panic!("{e}"),
    }
}
