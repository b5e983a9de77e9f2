//! Fuzzing the job manifest parser and the fleet loader with arbitrary and mutated input (the
//! example manifests and fleet, with flipped bytes, cut text, deleted or duplicated lines, values
//! replaced by other YAML types, huge numbers and deep nesting): loading never panics, a manifest
//! that loads is valid, and every refusal is a typed error naming its file and, for a bad value,
//! its field. `PROPTEST_CASES` sets the number of cases per property.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use tidegate_model::{
    is_valid_name, load_fleet, load_fleet_with_scheduling, parse_job, Fleet, LoadError, LoadErrors,
    MAX_INPUTS,
};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Cases per property: `PROPTEST_CASES`, or `default` (sized so that this file runs in seconds
/// in a debug build).
fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn example_fleet() -> &'static Fleet {
    static FLEET: std::sync::OnceLock<Fleet> = std::sync::OnceLock::new();
    FLEET.get_or_init(|| load_fleet(&examples().join("fleet")).unwrap())
}

fn example_jobs() -> &'static [(PathBuf, String)] {
    static JOBS: std::sync::OnceLock<Vec<(PathBuf, String)>> = std::sync::OnceLock::new();
    JOBS.get_or_init(|| {
        let mut out: Vec<(PathBuf, String)> = fs::read_dir(examples().join("jobs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| {
                let text = fs::read_to_string(&p).unwrap();
                (p, text)
            })
            .collect();
        out.sort();
        assert!(out.len() >= 5, "the example jobs are missing");
        out
    })
}

// ---------- mutations ----------

/// YAML values of every type, edge values and nesting, to put where a value was.
const REPLACEMENTS: &[&str] = &[
    "~",
    "null",
    "[]",
    "{}",
    "true",
    "-1",
    "0",
    "-0.0",
    ".nan",
    ".inf",
    "-.inf",
    "1e309",
    "18446744073709551616",
    "-9223372036854775809",
    "4294967296",
    "99999999999999999999999999999999999999",
    "0x7fffffff",
    "''",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "!!binary aGVsbG8=",
    "!!str 1",
    "!custom tag",
    "&a [1, 2]",
    "*undefined",
    "<<: {a: 1}",
    "[a, {b: [c, {d: e}]}]",
    "{a: 1, a: 2}",
    "\"../../../etc/passwd\"",
    "\"a b\"",
    "H100",
    "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "ehr-raw@2026-10",
    "private",
    "restricted",
    "|\n  block\n  text",
    ">-\n  folded",
    "? complex\n: key",
];

/// One change to a text.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one bit of one byte.
    FlipBit(Index, u8),
    /// Replace one byte.
    SetByte(Index, u8),
    /// Keep only a prefix.
    Truncate(Index),
    /// Delete one line.
    DeleteLine(Index),
    /// Repeat one line (duplicate keys, list items).
    DuplicateLine(Index),
    /// Swap two lines.
    SwapLines(Index, Index),
    /// Put a value of another type (or an edge value) where a line's value is.
    ReplaceValue(Index, Index),
    /// Put an arbitrary value where a line's value is.
    ArbitraryValue(Index, String),
    /// Nest a value `n` levels deep (flow or block style) where a line's value is.
    Nest(Index, usize, bool),
    /// Insert an arbitrary line.
    InsertLine(Index, String),
    /// A very long value (100 KiB).
    LongValue(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        any::<Index>().prop_map(Mutation::DeleteLine),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::ReplaceValue(a, b)),
        (any::<Index>(), "\\PC{0,40}").prop_map(|(a, s)| Mutation::ArbitraryValue(a, s)),
        (any::<Index>(), 1usize..200, any::<bool>()).prop_map(|(a, n, f)| Mutation::Nest(a, n, f)),
        (any::<Index>(), "[ -~]{0,60}").prop_map(|(a, s)| Mutation::InsertLine(a, s)),
        any::<Index>().prop_map(Mutation::LongValue),
    ]
}

fn replace_value(line: &str, value: &str) -> String {
    let indent = line.len() - line.trim_start().len();
    let pad = " ".repeat(indent + 2);
    let value = value.replace('\n', &format!("\n{pad}"));
    if let Some((key, _)) = line.split_once(": ") {
        format!("{key}: {value}")
    } else if let Some(key) = line.strip_suffix(':') {
        format!("{key}: {value}")
    } else if let Some(rest) = line.trim_start().strip_prefix("- ") {
        let _ = rest;
        format!("{}- {value}", &line[..indent])
    } else {
        format!("{line} {value}")
    }
}

fn nested(n: usize, flow: bool) -> String {
    if flow {
        format!("{}1{}", "[".repeat(n), "]".repeat(n))
    } else {
        let mut s = String::new();
        for d in 0..n {
            s.push('\n');
            s.push_str(&" ".repeat(d * 2));
            s.push_str("k:");
        }
        s.push_str(" 1");
        s
    }
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let set_line = |lines: &mut Vec<String>, i: &Index, f: &dyn Fn(&str) -> String| {
        let i = i.index(lines.len());
        lines[i] = f(&lines[i]);
    };
    match m {
        Mutation::FlipBit(i, b) | Mutation::SetByte(i, b) => {
            let mut bytes = text.as_bytes().to_vec();
            if bytes.is_empty() {
                return text.to_owned();
            }
            let at = i.index(bytes.len());
            if matches!(m, Mutation::FlipBit(..)) {
                bytes[at] ^= 1 << b;
            } else {
                bytes[at] = *b;
            }
            // The parsers take text: invalid UTF-8 becomes U+FFFD, as a reader of the file would
            // refuse it before parsing.
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Mutation::Truncate(i) => {
            let mut at = i.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            return text[..at].to_owned();
        }
        Mutation::DeleteLine(i) => {
            let at = i.index(lines.len());
            lines.remove(at);
        }
        Mutation::DuplicateLine(i) => {
            let at = i.index(lines.len());
            let l = lines[at].clone();
            lines.insert(at, l);
        }
        Mutation::SwapLines(a, b) => {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
        }
        Mutation::ReplaceValue(i, v) => {
            let v = REPLACEMENTS[v.index(REPLACEMENTS.len())];
            set_line(&mut lines, i, &|l| replace_value(l, v));
        }
        Mutation::ArbitraryValue(i, v) => set_line(&mut lines, i, &|l| replace_value(l, v)),
        Mutation::Nest(i, n, flow) => {
            let v = nested(*n, *flow);
            set_line(&mut lines, i, &|l| replace_value(l, &v));
        }
        Mutation::InsertLine(i, s) => {
            let at = i.index(lines.len() + 1);
            lines.insert(at, s.clone());
        }
        Mutation::LongValue(i) => {
            let v = "x".repeat(100 * 1024);
            set_line(&mut lines, i, &|l| replace_value(l, &v));
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn mutated(text: &str, ms: &[Mutation]) -> String {
    ms.iter().fold(text.to_owned(), |t, m| apply(&t, m))
}

// ---------- what every refusal must look like ----------

/// Every error is typed and names the file; a syntax error's line is in the text (or 0 when the
/// parser gave none), a bad value names its field.
fn check_errors(errs: &LoadErrors, within: &Path, text_lines: Option<usize>) {
    assert!(!errs.0.is_empty(), "a refusal with no error");
    for e in &errs.0 {
        let shown = e.to_string();
        assert!(!shown.trim().is_empty(), "an empty error: {e:?}");
        assert!(
            e.path().starts_with(within),
            "the error names {} outside {}: {shown}",
            e.path().display(),
            within.display()
        );
        match e {
            LoadError::Io { .. } => {
                assert!(text_lines.is_none(), "an I/O error from text: {shown}")
            }
            LoadError::Syntax { line, message, .. } => {
                assert!(!message.trim().is_empty(), "a syntax error says nothing");
                if let Some(n) = text_lines {
                    assert!(*line <= n as u64, "line {line} of a {n}-line text: {shown}");
                }
            }
            LoadError::Invalid {
                field,
                message,
                origin,
            } => {
                assert!(
                    !field.trim().is_empty(),
                    "an invalid value names no field: {shown}"
                );
                assert!(
                    !message.trim().is_empty(),
                    "an invalid value says nothing: {shown}"
                );
                if let Some(n) = text_lines {
                    assert!(
                        origin.line as usize <= n,
                        "line {} of a {n}-line text: {shown}",
                        origin.line
                    );
                }
            }
        }
    }
}

/// Lines of `text` as YAML counts them (`\n`, `\r\n` and a lone `\r` each end one).
fn yaml_lines(text: &str) -> usize {
    text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1
}

/// Parses `text` as the manifest `path`: it loads valid or is refused with typed errors.
fn check_job(path: &Path, text: &str) {
    match parse_job(path, text, example_fleet()) {
        Ok(job) => {
            assert!(
                is_valid_name(&job.name),
                "a job loaded with name {:?}",
                job.name
            );
            assert!(!job.team.is_empty(), "a job loaded with no team");
            assert!(
                job.inputs.len() <= MAX_INPUTS,
                "a job loaded with {} inputs",
                job.inputs.len()
            );
            let h = job.resources.expected_hours;
            assert!(h > 0.0 && h.is_finite(), "a job loaded expecting {h} hours");
        }
        Err(errs) => check_errors(&errs, path, Some(yaml_lines(text))),
    }
}

// ---------- job manifests ----------

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn mutated_manifests_load_or_are_refused_with_typed_errors(
        which in any::<Index>(),
        ms in prop::collection::vec(mutation(), 1..5),
    ) {
        let jobs = example_jobs();
        let (path, text) = &jobs[which.index(jobs.len())];
        check_job(path, &mutated(text, &ms));
    }

    #[test]
    fn arbitrary_text_is_refused_with_typed_errors(text in "\\PC{0,400}") {
        let path = Path::new("fuzz/job.yaml");
        prop_assert!(parse_job(path, &text, example_fleet()).is_err());
        check_job(path, &text);
    }

    #[test]
    fn arbitrary_bytes_are_refused_with_typed_errors(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let path = Path::new("fuzz/job.yaml");
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(parse_job(path, &text, example_fleet()).is_err());
        check_job(path, &text);
    }

    #[test]
    fn yaml_shaped_text_is_refused_with_typed_errors(
        text in "((apiVersion|kind|metadata|spec|name|team|labels|inputs|resources|gpus|command|- |  |: |\\{|\\}|\\[|\\]|,|&a |\\*a |!!|'|\"|#|\n|[a-z0-9@.]{1,6}|-?[0-9]{1,25}(\\.[0-9]+)?(e[0-9]{1,4})?)){0,80}",
    ) {
        let path = Path::new("fuzz/job.yaml");
        check_job(path, &text);
    }
}

#[test]
fn a_manifest_nested_past_the_parser_limit_is_refused_without_overflowing_the_stack() {
    let (path, text) = example_jobs()
        .iter()
        .find(|(p, _)| p.ends_with("sepsis-train.yaml"))
        .unwrap();
    assert!(text.contains("\n  hyperparameters: {"), "{text}");
    // As deep as a manifest the API accepts (256 KiB) can nest, in flow and in block style, in
    // a value the job keeps as it is (hyperparameters).
    for (depth, flow) in [(120_000, true), (500, false)] {
        let value = if flow {
            format!(" {}", nested(depth, true))
        } else {
            nested(depth, false).replace('\n', "\n      ")
        };
        let deep = text.replace(
            "\n  hyperparameters: {",
            &format!("\n  hyperparameters:\n    deep:{value}\n  x-after: {{"),
        );
        // On a thread with the stack that spawned threads and tokio's blocking pool (where the
        // server parses manifests) get by default: nesting is bounded by the parser's limits,
        // not by the caller's stack.
        let file = path.clone();
        let out = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                parse_job(&file, &deep, example_fleet())
                    .map(|_| ())
                    .map_err(|e| e.0)
            })
            .unwrap()
            .join()
            .unwrap();
        let errs = out.expect_err("a manifest nested past the limit loaded");
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            matches!(errs.as_slice(), [LoadError::Syntax { line: 1.., .. }]),
            "{shown:?}"
        );
        assert!(
            shown[0].contains("depth") || shown[0].contains("limit"),
            "{shown:?}"
        );
    }
}

// ---------- fleet directories ----------

/// A copy of the example fleet to break.
fn fleet_copy() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else {
                fs::copy(e.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&examples().join("fleet"), dir.path());
    dir
}

/// The fleet's YAML files, relative to the fleet directory.
const FLEET_FILES: &[&str] = &[
    "fleet.yaml",
    "datasets.yaml",
    "artifacts.yaml",
    "zones/hospital-onprem.yaml",
    "zones/private-cloud.yaml",
    "zones/public-eu.yaml",
    "zones/public-us.yaml",
    "zones/edge-clinic.yaml",
];

/// Writes `text` over one file of the fleet copy in `dir`, loads the fleet, and puts the file
/// back.
fn check_fleet_with(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    let original = fs::read_to_string(&path).unwrap();
    fs::write(&path, text).unwrap();
    let out = load_fleet_with_scheduling(dir);
    fs::write(&path, original).unwrap();
    match out {
        Ok((fleet, _)) => {
            assert!(!fleet.zones.is_empty(), "a fleet loaded with no zones");
            for z in &fleet.zones {
                assert!(
                    is_valid_name(&z.name),
                    "a zone loaded with name {:?}",
                    z.name
                );
            }
        }
        Err(errs) => check_errors(&errs, dir, None),
    }
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn mutated_fleet_files_load_or_are_refused_with_typed_errors(
        which in any::<Index>(),
        ms in prop::collection::vec(mutation(), 1..5),
    ) {
        thread_local!(static DIR: tempfile::TempDir = fleet_copy());
        let rel = FLEET_FILES[which.index(FLEET_FILES.len())];
        DIR.with(|d| {
            let original = fs::read_to_string(d.path().join(rel)).unwrap();
            check_fleet_with(d.path(), rel, &mutated(&original, &ms));
        });
    }

    #[test]
    fn arbitrary_fleet_files_are_refused_with_typed_errors(
        which in any::<Index>(),
        text in "\\PC{0,300}",
    ) {
        thread_local!(static DIR: tempfile::TempDir = fleet_copy());
        let rel = FLEET_FILES[which.index(FLEET_FILES.len())];
        DIR.with(|d| check_fleet_with(d.path(), rel, &text));
    }
}

#[test]
fn the_unmutated_examples_load() {
    // The harness's starting points are valid: a mutation is what breaks them.
    for (path, text) in example_jobs() {
        parse_job(path, text, example_fleet()).unwrap_or_else(|e| panic!("{e}"));
    }
    let dir = fleet_copy();
    load_fleet_with_scheduling(dir.path()).unwrap();
}
