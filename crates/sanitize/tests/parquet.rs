//! The sanitizer on Parquet tables built from the real Synthea tables in `../shared/data/synthea`:
//! identifiers gone, foreign keys still joining, the same cells as the CSV run, and a wrong
//! schema, a file that is not Parquet or a bad row failing with file, column or row and leaving
//! nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, BinaryArray, ListArray, RecordBatchReader, StringArray, StructArray,
};
use arrow_schema::{DataType, Field};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use tidegate_sanitize::profile::OnUnknown;
use tidegate_sanitize::{sanitize, Key, Options, Profile, SanitizeError};
use tidegate_testkit::synthea_dir as synthea;

/// Options for a source registered as the built-in profile's input, `restricted/phi`.
fn key(b: u8) -> Options {
    Options::new(Key::from_bytes(&[b; 32]).unwrap()).with_source("restricted/phi")
}

fn profile() -> Profile {
    let mut p = Profile::hipaa_safe_harbor().unwrap();
    p.set_k(1).unwrap();
    p
}

use tidegate_testkit::parquet::{array, csv_to_parquet, read_csv, write_parquet};

/// Every column of a Parquet table as text (null as empty), in file order; checks that each
/// column is UTF-8.
fn read_parquet(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let header: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut cols = vec![Vec::new(); header.len()];
    for batch in reader {
        let batch = batch.unwrap();
        for (c, a) in cols.iter_mut().zip(batch.columns()) {
            assert_eq!(a.data_type(), &DataType::Utf8, "output columns are UTF-8");
            let s = a.as_string::<i32>();
            for i in 0..s.len() {
                c.push(if s.is_null(i) {
                    String::new()
                } else {
                    s.value(i).to_string()
                });
            }
        }
    }
    (header, cols)
}

/// A table of an output directory (CSV or Parquet by its file name), by column name.
fn table(dir: &Path, file: &str) -> HashMap<String, Vec<String>> {
    let p = dir.join(file);
    let (h, c) = if file.ends_with(".parquet") {
        read_parquet(&p)
    } else {
        read_csv(&p)
    };
    h.into_iter().zip(c).collect()
}

/// A new input directory holding the named Synthea tables as Parquet, and the others named as CSV.
fn input_dir(root: &Path, data: &Path, parquet: &[&str], csv: &[&str]) -> PathBuf {
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for t in parquet {
        csv_to_parquet(
            &data.join(format!("{t}.csv")),
            &input.join(format!("{t}.parquet")),
        );
    }
    for t in csv {
        std::fs::copy(
            data.join(format!("{t}.csv")),
            input.join(format!("{t}.csv")),
        )
        .unwrap();
    }
    input
}

/// Runs on `input`, expects a failure, checks that nothing was published or left behind.
fn expect_failure(p: &Profile, input: &Path) -> SanitizeError {
    let root = input.parent().unwrap();
    let out = root.join("out");
    let err = sanitize(p, input, &out, &key(9)).unwrap_err();
    assert!(!out.exists(), "nothing is published: {err}");
    let leftovers: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "in")
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary output left: {leftovers:?}"
    );
    err
}

fn expect_schema_error(p: &Profile, input: &Path, file: &str, column: &str, want: &str) {
    let err = expect_failure(p, input);
    let msg = err.to_string();
    match &err {
        SanitizeError::Schema {
            path,
            column: c,
            message,
        } => {
            assert!(path.ends_with(file), "{msg}");
            assert_eq!(c, column, "{msg}");
            assert!(message.contains(want), "{msg}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        msg.contains(file) && msg.contains(&format!("`{column}`")),
        "{msg}"
    );
}

fn expect_row_error(input: &Path, file: &str, want_row: u64, want: &str) {
    let err = expect_failure(&profile(), input);
    let msg = err.to_string();
    match &err {
        SanitizeError::Row { path, row, .. } => {
            assert!(path.ends_with(file), "{msg}");
            assert_eq!(*row, want_row, "{msg}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        msg.contains(want) && msg.contains(&format!("row {want_row}")),
        "{msg}"
    );
}

// ---- the tests ----

#[test]
fn parquet_tables_lose_their_identifiers_and_still_join() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Parquet and CSV side by side in one directory.
    let input = input_dir(
        tmp.path(),
        &data,
        &["patients", "encounters"],
        &["conditions"],
    );
    let out = tmp.path().join("out");
    let report = sanitize(&profile(), &input, &out, &key(1)).unwrap();
    assert!(report.earned, "{:?}", report.reasons);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "conditions.csv",
            "encounters.parquet",
            "patients.parquet",
            "sanitize-report.json"
        ]
    );
    for f in ["encounters.parquet", "patients.parquet"] {
        let bytes = std::fs::read(out.join(f)).unwrap();
        assert!(
            bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
            "{f} is Parquet"
        );
    }

    let (src_p, src_e) = (table_csv(&data, "patients"), table_csv(&data, "encounters"));
    let (pats, encs) = (
        table(&out, "patients.parquet"),
        table(&out, "encounters.parquet"),
    );
    let conds = table(&out, "conditions.csv");
    assert_eq!(pats["Id"].len(), 11);
    assert_eq!(encs["Id"].len(), src_e["Id"].len());
    for gone in [
        "SSN",
        "DRIVERS",
        "PASSPORT",
        "FIRST",
        "LAST",
        "MAIDEN",
        "ADDRESS",
        "CITY",
        "LAT",
        "LON",
        "BIRTHPLACE",
    ] {
        assert!(!pats.contains_key(gone), "patients.{gone} is dropped");
    }
    // No identifying value anywhere in the output, whatever the column.
    let mut text = String::new();
    for t in [&pats, &encs, &conds] {
        for col in t.values() {
            for v in col {
                text.push_str(v);
                text.push('\n');
            }
        }
    }
    let mut checked = 0;
    for c in [
        "SSN",
        "DRIVERS",
        "PASSPORT",
        "FIRST",
        "LAST",
        "MAIDEN",
        "ADDRESS",
        "BIRTHDATE",
        "Id",
    ] {
        for v in src_p[c].iter().filter(|v| !v.is_empty()) {
            assert!(!text.contains(v.as_str()), "patients.{c} value survived");
            checked += 1;
        }
    }
    for v in &src_e["Id"] {
        assert!(!text.contains(v.as_str()), "encounters.Id value survived");
        checked += 1;
    }
    assert!(checked > 400, "checked {checked} values");
    assert!(
        pats["BIRTHDATE"]
            .iter()
            .all(|v| v.len() == 4 || v.starts_with("<=")),
        "birth dates are years"
    );
    assert!(
        encs["START"].iter().all(|v| v.len() == 4),
        "timestamps are years"
    );
    assert!(pats["ZIP"].iter().all(|v| v.len() == 3));
    // Pseudonyms join across tables and across formats.
    let ids: HashSet<&String> = pats["Id"].iter().collect();
    assert!(ids.iter().all(|v| v.starts_with('p') && v.len() == 25));
    for (t, refs) in [
        ("encounters", &encs["PATIENT"]),
        ("conditions", &conds["PATIENT"]),
    ] {
        assert!(!refs.is_empty());
        for v in refs {
            assert!(ids.contains(v), "{t}.PATIENT does not join patients.Id");
        }
    }
    let enc_ids: HashSet<&String> = encs["Id"].iter().collect();
    assert!(
        conds["ENCOUNTER"].iter().all(|v| enc_ids.contains(v)),
        "conditions.ENCOUNTER joins encounters.Id"
    );
}

fn table_csv(dir: &Path, name: &str) -> HashMap<String, Vec<String>> {
    table(dir, &format!("{name}.csv"))
}

#[test]
fn parquet_output_equals_csv_output_cell_for_cell() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut tables = Vec::new();
    let mut typed: HashSet<String> = HashSet::new();
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "csv") {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            for t in csv_to_parquet(&p, &input.join(format!("{name}.parquet"))) {
                typed.insert(if matches!(t, DataType::Timestamp(..)) {
                    "Timestamp".to_string()
                } else {
                    t.to_string()
                });
            }
            tables.push(name);
        }
    }
    assert_eq!(tables.len(), 18);
    // The conversion exercised the text form of numbers, dates and timestamps, not only strings.
    for t in ["Int64", "Float64", "Date32", "Timestamp", "Utf8"] {
        assert!(typed.contains(t), "no {t} column among {typed:?}");
    }

    let (from_csv, from_pq, again) = (
        tmp.path().join("csv"),
        tmp.path().join("pq"),
        tmp.path().join("pq2"),
    );
    let rc = sanitize(&profile(), &data, &from_csv, &key(2)).unwrap();
    let rp = sanitize(&profile(), &input, &from_pq, &key(2)).unwrap();
    sanitize(&profile(), &input, &again, &key(2)).unwrap();
    assert_eq!(rc.rows_in, rp.rows_in);
    assert_eq!(rc.rows_out, rp.rows_out);
    assert_eq!((rc.earned, rp.earned), (true, true), "{:?}", rp.reasons);
    let mut cells = 0usize;
    for t in &tables {
        let (hc, cc) = read_csv(&from_csv.join(format!("{t}.csv")));
        let (hp, cp) = read_parquet(&from_pq.join(format!("{t}.parquet")));
        assert_eq!(hc, hp, "{t}: same output columns");
        for ((name, a), b) in hc.iter().zip(&cc).zip(&cp) {
            assert_eq!(a.len(), b.len(), "{t}.{name}: same rows");
            for (row, (x, y)) in a.iter().zip(b).enumerate() {
                assert_eq!(x, y, "{t}.{name} row {row}");
                cells += 1;
            }
        }
        let (a, b) = (
            std::fs::read(from_pq.join(format!("{t}.parquet"))).unwrap(),
            std::fs::read(again.join(format!("{t}.parquet"))).unwrap(),
        );
        assert_eq!(
            a, b,
            "{t}: the same input and key give the same Parquet bytes"
        );
    }
    assert!(cells > 50_000, "compared {cells} cells");
}

#[test]
fn struct_list_and_binary_columns_fail_naming_the_column() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let file = input.join("patients.parquet");
    let ids: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
    let id = Field::new("Id", DataType::Utf8, true);

    let street = Field::new("street", DataType::Utf8, true);
    let address: ArrayRef = Arc::new(StructArray::from(vec![(
        Arc::new(street),
        Arc::new(StringArray::from(vec!["1 Main St", "2 Elm St"])) as ArrayRef,
    )]));
    write_parquet(
        &file,
        vec![
            id.clone(),
            Field::new("ADDRESS", address.data_type().clone(), true),
        ],
        vec![ids.clone(), address],
        10,
    );
    expect_schema_error(&profile(), &input, "patients.parquet", "ADDRESS", "struct");

    let aliases: ArrayRef = Arc::new(ListArray::from_iter_primitive::<
        arrow_array::types::Int32Type,
        _,
        _,
    >(vec![Some(vec![Some(1)]), None]));
    write_parquet(
        &file,
        vec![
            id.clone(),
            Field::new("FIRST", aliases.data_type().clone(), true),
        ],
        vec![ids.clone(), aliases],
        10,
    );
    expect_schema_error(&profile(), &input, "patients.parquet", "FIRST", "list");

    let raw: ArrayRef = Arc::new(BinaryArray::from_vec(vec![b"\xff\x00", b"x"]));
    write_parquet(
        &file,
        vec![id, Field::new("SSN", DataType::Binary, true)],
        vec![ids, raw],
        10,
    );
    expect_schema_error(&profile(), &input, "patients.parquet", "SSN", "binary");
}

#[test]
fn a_file_that_is_not_parquet_fails_naming_the_file() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = input_dir(tmp.path(), &data, &["encounters"], &[]);
    // CSV text under a Parquet name: no Parquet magic.
    std::fs::copy(data.join("patients.csv"), input.join("patients.parquet")).unwrap();
    let err = expect_failure(&profile(), &input);
    let msg = err.to_string();
    assert!(
        matches!(&err, SanitizeError::Input { path, .. } if path.ends_with("patients.parquet")),
        "{msg}"
    );
    assert!(
        msg.contains("patients.parquet") && msg.contains("not a readable Parquet file"),
        "{msg}"
    );

    // A real Parquet file cut short: the footer is gone.
    let good = std::fs::read(input.join("encounters.parquet")).unwrap();
    std::fs::write(input.join("patients.parquet"), &good[..good.len() / 2]).unwrap();
    let msg = expect_failure(&profile(), &input).to_string();
    assert!(
        msg.contains("patients.parquet") && msg.contains("not a readable Parquet file"),
        "{msg}"
    );

    // The same table as CSV and Parquet is ambiguous.
    std::fs::remove_file(input.join("patients.parquet")).unwrap();
    std::fs::copy(data.join("encounters.csv"), input.join("encounters.csv")).unwrap();
    let msg = expect_failure(&profile(), &input).to_string();
    assert!(msg.contains("table `encounters` is also in"), "{msg}");
}

#[test]
fn uncovered_or_duplicate_parquet_columns_fail_closed() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let (header, cols) = read_csv(&data.join("encounters.csv"));
    let mut fields: Vec<Field> = header
        .iter()
        .map(|h| Field::new(h, DataType::Utf8, true))
        .collect();
    let mut arrays: Vec<ArrayRef> = cols.iter().map(|c| array(&DataType::Utf8, c)).collect();
    let rows = cols[0].len();
    fields.push(Field::new("NOTE", DataType::Utf8, true));
    arrays.push(array(
        &DataType::Utf8,
        &vec!["seen by Dr. Smith".to_string(); rows],
    ));
    write_parquet(
        &input.join("encounters.parquet"),
        fields.clone(),
        arrays.clone(),
        1000,
    );
    expect_schema_error(
        &profile(),
        &input,
        "encounters.parquet",
        "NOTE",
        "is not covered by profile `hipaa-safe-harbor` table `encounters`",
    );

    // Under `on_unknown: drop` the column is left out and the lower classification is not earned.
    let mut p = profile();
    p.on_unknown = OnUnknown::Drop;
    let out = tmp.path().join("dropped");
    let r = sanitize(&p, &input, &out, &key(3)).unwrap();
    assert!(!r.earned);
    assert!(
        r.reasons
            .iter()
            .any(|m| m.contains("encounters: columns not covered by the profile: NOTE")),
        "{:?}",
        r.reasons
    );
    let enc = table(&out, "encounters.parquet");
    assert!(!enc.contains_key("NOTE") && enc["PATIENT"].len() == rows);
    std::fs::remove_dir_all(&out).unwrap();

    // A column name twice.
    fields.pop();
    arrays.pop();
    fields.push(Field::new("PATIENT", DataType::Utf8, true));
    arrays.push(arrays[3].clone());
    write_parquet(&input.join("encounters.parquet"), fields, arrays, 1000);
    expect_schema_error(
        &profile(),
        &input,
        "encounters.parquet",
        "PATIENT",
        "appears twice",
    );
}

#[test]
fn bad_parquet_rows_fail_naming_the_row() {
    let Some(data) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let (header, cols) = read_csv(&data.join("encounters.csv"));
    let write = |cols: &[Vec<String>]| {
        let fields = header
            .iter()
            .map(|h| Field::new(h, DataType::Utf8, true))
            .collect();
        let arrays = cols.iter().map(|c| array(&DataType::Utf8, c)).collect();
        write_parquet(&input.join("encounters.parquet"), fields, arrays, 1000);
    };
    let start = header.iter().position(|h| h == "START").unwrap();
    let desc = header.iter().position(|h| h == "DESCRIPTION").unwrap();

    // A 2 MiB field at row 7 (0-based).
    let mut huge = cols.clone();
    huge[desc][7] = "x".repeat(2 << 20);
    write(&huge);
    expect_row_error(
        &input,
        "encounters.parquet",
        7,
        "column `DESCRIPTION` holds 2097152 bytes, over the limit",
    );

    // A malformed date at row 3.
    let mut bad = cols.clone();
    bad[start][3] = "yesterday".to_string();
    write(&bad);
    expect_row_error(
        &input,
        "encounters.parquet",
        3,
        "column `START`: not a date",
    );

    // Past the first record batches and row groups the row index still counts from the file's start.
    let n = 20_000;
    let mut long: Vec<Vec<String>> = cols
        .iter()
        .map(|c| c.iter().cycle().take(n).cloned().collect())
        .collect();
    long[start][17_000] = "2020-13-45".to_string();
    write(&long);
    expect_row_error(
        &input,
        "encounters.parquet",
        17_000,
        "column `START`: not a date",
    );
}

#[test]
fn scalar_and_dictionary_columns_are_read_as_their_text_form() {
    use arrow_array::types::Int32Type;
    use arrow_array::{
        BooleanArray, Decimal128Array, DictionaryArray, Float32Array, LargeStringArray,
        Time32SecondArray, TimestampMillisecondArray,
    };
    let yaml = r"
name: scalars
input_classification: restricted/phi
output_classification: confidential/deidentified
reference_year: 2025
tables:
  t:
    columns: { CITY: keep, NAME: keep, FLAG: keep, AMOUNT: keep, RATIO: keep, AT: keep, SEEN: keep, DAY: { generalize_date: year } }
";
    let p = Profile::from_yaml(yaml, "scalars.yaml").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let city: DictionaryArray<Int32Type> = vec![Some("Boston"), None, Some("Boston")]
        .into_iter()
        .collect();
    let amount = Decimal128Array::from(vec![Some(12_345), Some(-5), None])
        .with_precision_and_scale(9, 2)
        .unwrap();
    let day = array(
        &DataType::Date32,
        &[
            "2020-02-29".to_string(),
            String::new(),
            "1969-12-31".to_string(),
        ],
    );
    let columns: Vec<ArrayRef> = vec![
        Arc::new(city),
        Arc::new(LargeStringArray::from(vec![Some("a"), Some(""), None])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        Arc::new(amount),
        Arc::new(Float32Array::from(vec![Some(0.5), Some(-2.0), None])),
        Arc::new(Time32SecondArray::from(vec![Some(3_723), Some(0), None])),
        Arc::new(TimestampMillisecondArray::from(vec![
            Some(1_550_390_946_250),
            Some(0),
            None,
        ])),
        day,
    ];
    let names = [
        "CITY", "NAME", "FLAG", "AMOUNT", "RATIO", "AT", "SEEN", "DAY",
    ];
    let fields = names
        .iter()
        .zip(&columns)
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    write_parquet(&input.join("t.parquet"), fields, columns, 10);
    let out = tmp.path().join("out");
    sanitize(&p, &input, &out, &key(4)).unwrap();
    let (header, cols) = read_parquet(&out.join("t.parquet"));
    assert_eq!(header, names);
    let want: [[&str; 3]; 8] = [
        ["Boston", "", "Boston"],
        ["a", "", ""],
        ["true", "false", ""],
        ["123.45", "-0.05", ""],
        ["0.5", "-2", ""],
        ["01:02:03", "00:00:00", ""],
        ["2019-02-17T08:09:06.250", "1970-01-01T00:00:00", ""],
        ["2020", "", "1969"],
    ];
    for ((name, got), want) in names.iter().zip(&cols).zip(want) {
        assert_eq!(got, &want, "{name}");
    }
}
