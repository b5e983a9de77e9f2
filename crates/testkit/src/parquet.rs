//! Test-only Parquet tables: a CSV table converted to Parquet with typed columns (integers,
//! floats, dates, timestamps, booleans) wherever the value's text survives the round trip.
#![allow(clippy::expect_used, clippy::missing_panics_doc)]

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampSecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn days(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (
        v[..4].parse().ok()?,
        v[5..7].parse().ok()?,
        v[8..10].parse().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    Some(era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468)
}

/// Seconds since the epoch of a `YYYY-MM-DDTHH:MM:SSZ` timestamp.
fn seconds(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    if b.len() != 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let (h, mi, s): (i64, i64, i64) = (
        v[11..13].parse().ok()?,
        v[14..16].parse().ok()?,
        v[17..19].parse().ok()?,
    );
    Some(days(&v[..10])? * 86_400 + h * 3600 + mi * 60 + s)
}

/// The narrowest Arrow type that gives back exactly the CSV text of every non-empty value.
fn infer(values: &[String]) -> DataType {
    let present: Vec<&String> = values.iter().filter(|v| !v.is_empty()).collect();
    let all = |f: &dyn Fn(&str) -> bool| !present.is_empty() && present.iter().all(|v| f(v));
    if all(&|v| v.parse::<i64>().is_ok_and(|n| n.to_string() == v)) {
        DataType::Int64
    } else if all(&|v| {
        v.parse::<f64>()
            .is_ok_and(|n| n.is_finite() && n.to_string() == v)
    }) {
        DataType::Float64
    } else if all(&|v| days(v).is_some()) {
        DataType::Date32
    } else if all(&|v| seconds(v).is_some()) {
        DataType::Timestamp(TimeUnit::Second, Some("UTC".into()))
    } else if all(&|v| v == "true" || v == "false") {
        DataType::Boolean
    } else {
        DataType::Utf8
    }
}

/// One array of a column of CSV text (empty is null) in the given type.
pub fn array(t: &DataType, values: &[String]) -> ArrayRef {
    fn opt(v: &str) -> Option<&str> {
        (!v.is_empty()).then_some(v)
    }
    match t {
        DataType::Int64 => {
            let mut b = Int64Builder::new();
            values
                .iter()
                .for_each(|v| b.append_option(opt(v).map(|v| v.parse().expect("test data"))));
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::new();
            values
                .iter()
                .for_each(|v| b.append_option(opt(v).map(|v| v.parse().expect("test data"))));
            Arc::new(b.finish())
        }
        DataType::Date32 => {
            let mut b = Date32Builder::new();
            values.iter().for_each(|v| {
                b.append_option(
                    opt(v).map(|v| i32::try_from(days(v).expect("test data")).expect("test data")),
                )
            });
            Arc::new(b.finish())
        }
        DataType::Timestamp(_, _) => {
            let mut b = TimestampSecondBuilder::new().with_timezone("UTC");
            values
                .iter()
                .for_each(|v| b.append_option(opt(v).map(|v| seconds(v).expect("test data"))));
            Arc::new(b.finish())
        }
        DataType::Boolean => {
            let mut b = BooleanBuilder::new();
            values
                .iter()
                .for_each(|v| b.append_option(opt(v).map(|v| v == "true")));
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::new();
            values.iter().for_each(|v| b.append_option(opt(v)));
            Arc::new(b.finish())
        }
    }
}

/// Writes columns as a snappy-compressed Parquet file in row groups of `group` rows.
pub fn write_parquet(path: &Path, fields: Vec<Field>, columns: Vec<ArrayRef>, group: usize) {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("test data");
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut w = ArrowWriter::try_new(File::create(path).expect("test data"), schema, Some(props))
        .expect("test data");
    w.write(&batch).expect("test data");
    w.close().expect("test data");
}

/// A CSV table's header and columns of text.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).expect("test data");
    let header: Vec<String> = r
        .headers()
        .expect("test data")
        .iter()
        .map(String::from)
        .collect();
    let mut cols = vec![Vec::new(); header.len()];
    for rec in r.records() {
        for (c, v) in cols.iter_mut().zip(rec.expect("test data").iter()) {
            c.push(v.to_string());
        }
    }
    (header, cols)
}

/// Converts a CSV table to Parquet, typing each column where its text survives; returns the types.
pub fn csv_to_parquet(csv: &Path, parquet: &Path) -> Vec<DataType> {
    let (header, cols) = read_csv(csv);
    let types: Vec<DataType> = cols.iter().map(|c| infer(c)).collect();
    let fields = header
        .iter()
        .zip(&types)
        .map(|(h, t)| Field::new(h, t.clone(), true))
        .collect();
    let arrays = cols.iter().zip(&types).map(|(c, t)| array(t, c)).collect();
    // Small row groups, so reading crosses row-group boundaries.
    write_parquet(parquet, fields, arrays, 100);
    types
}
