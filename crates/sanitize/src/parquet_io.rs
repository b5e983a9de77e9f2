//! Parquet tables as rows of text cells: a reader that decodes record batches and turns each cell
//! into its text form (strings as they are; numbers, booleans, dates, times and timestamps
//! formatted; nulls empty), and a writer that stores rows as nullable UTF-8 columns.
//!
//! Column types are those of the Arrow schema the writer embedded, where there is one (so a
//! timestamp in seconds, stored as a plain 64-bit integer, still reads as a timestamp), else
//! those of the Parquet schema. Dictionary-encoded columns read as their values. Columns that are
//! not text or a scalar (lists, structs, maps, binary) are a schema error naming the column.

use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Decimal256Type, Decimal32Type, Decimal64Type,
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use csv::ByteRecord;
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::transform::civil_from_days;
use crate::SanitizeError;

/// Rows per decoded record batch.
const READ_BATCH_ROWS: usize = 8192;
/// Rows buffered before they are handed to the Parquet writer as one batch.
const WRITE_BATCH_ROWS: usize = 8192;
/// Bytes of cell text buffered before a batch is handed to the writer, whatever its row count.
const WRITE_BATCH_BYTES: usize = 8 << 20;
/// A row group is closed once its encoded size reaches this, which bounds the writer's memory.
const ROW_GROUP_BYTES: usize = 64 << 20;

/// Writes the text of cell `row` (known not to be null) into the buffer.
type CellFn = Box<dyn Fn(usize, &mut Vec<u8>)>;

/// Why a column type cannot be read as text, or `None` when it can.
fn unsupported(t: &DataType) -> Option<&'static str> {
    match t {
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Date32
        | DataType::Date64
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _)
        | DataType::Timestamp(_, _)
        | DataType::Time32(TimeUnit::Second | TimeUnit::Millisecond)
        | DataType::Time64(TimeUnit::Microsecond | TimeUnit::Nanosecond) => None,
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::FixedSizeList(_, _) => Some("a list column cannot be sanitized as text"),
        DataType::Struct(_) => Some("a struct (nested) column cannot be sanitized as text"),
        DataType::Map(_, _) => Some("a map column cannot be sanitized as text"),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Some(
            "a binary column (bytes without a UTF-8 string annotation) cannot be sanitized as text",
        ),
        DataType::Dictionary(_, values) => unsupported(values),
        _ => Some("this column type cannot be sanitized as text"),
    }
}

/// Writes `v` with its `Display` form.
fn display(v: impl std::fmt::Display, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{v}");
}

/// `YYYY-MM-DD` of a day count since 1970-01-01.
fn date(days: i64, out: &mut Vec<u8>) {
    use std::io::Write;
    let (y, m, d) = civil_from_days(days);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}");
}

/// Splits a count of `per_second` units into whole seconds and the fraction, in units.
fn split_units(v: i64, per_second: i64) -> (i64, i64) {
    (v.div_euclid(per_second), v.rem_euclid(per_second))
}

/// Digits of the fraction of a second for a count of units per second.
fn fraction_digits(per_second: i64) -> usize {
    match per_second {
        1_000 => 3,
        1_000_000 => 6,
        1_000_000_000 => 9,
        _ => 0,
    }
}

/// `HH:MM:SS` of seconds within a day, then `.fff` when the fraction is not zero.
fn time_of_day(secs: i64, frac: i64, per_second: i64, out: &mut Vec<u8>) {
    use std::io::Write;
    let s = secs.rem_euclid(86_400);
    let _ = write!(out, "{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if frac != 0 {
        let w = fraction_digits(per_second);
        let _ = write!(out, ".{frac:0w$}");
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]`, then `Z` when the timestamp is an instant (has a time zone; it is
/// written in UTC), for a count of units since the epoch.
fn timestamp(v: i64, per_second: i64, utc: bool, out: &mut Vec<u8>) {
    let (secs, frac) = split_units(v, per_second);
    date(secs.div_euclid(86_400), out);
    out.push(b'T');
    time_of_day(secs, frac, per_second, out);
    if utc {
        out.push(b'Z');
    }
}

/// The cell writer of one column of a batch; `None` when the array is not of a supported type.
fn cell_fn(a: &ArrayRef) -> Option<CellFn> {
    macro_rules! prim {
        ($t:ty, |$v:ident, $o:ident| $body:expr) => {{
            let x = a.as_primitive_opt::<$t>()?.clone();
            Box::new(move |i, $o: &mut Vec<u8>| {
                let $v = x.value(i);
                $body
            }) as CellFn
        }};
    }
    macro_rules! decimal {
        ($t:ty) => {{
            let x = a.as_primitive_opt::<$t>()?.clone();
            Box::new(move |i, o: &mut Vec<u8>| o.extend_from_slice(x.value_as_string(i).as_bytes()))
                as CellFn
        }};
    }
    Some(match a.data_type() {
        DataType::Null => Box::new(|_, _: &mut Vec<u8>| {}),
        DataType::Utf8 => {
            let x = a.as_string_opt::<i32>()?.clone();
            Box::new(move |i, o: &mut Vec<u8>| o.extend_from_slice(x.value(i).as_bytes()))
        }
        DataType::LargeUtf8 => {
            let x = a.as_string_opt::<i64>()?.clone();
            Box::new(move |i, o: &mut Vec<u8>| o.extend_from_slice(x.value(i).as_bytes()))
        }
        DataType::Utf8View => {
            let x = a.as_string_view_opt()?.clone();
            Box::new(move |i, o: &mut Vec<u8>| o.extend_from_slice(x.value(i).as_bytes()))
        }
        DataType::Boolean => {
            let x = a.as_boolean_opt()?.clone();
            Box::new(move |i, o: &mut Vec<u8>| {
                o.extend_from_slice(if x.value(i) { b"true" } else { b"false" })
            })
        }
        DataType::Int8 => prim!(Int8Type, |v, o| display(v, o)),
        DataType::Int16 => prim!(Int16Type, |v, o| display(v, o)),
        DataType::Int32 => prim!(Int32Type, |v, o| display(v, o)),
        DataType::Int64 => prim!(Int64Type, |v, o| display(v, o)),
        DataType::UInt8 => prim!(UInt8Type, |v, o| display(v, o)),
        DataType::UInt16 => prim!(UInt16Type, |v, o| display(v, o)),
        DataType::UInt32 => prim!(UInt32Type, |v, o| display(v, o)),
        DataType::UInt64 => prim!(UInt64Type, |v, o| display(v, o)),
        DataType::Float16 => prim!(Float16Type, |v, o| display(v, o)),
        DataType::Float32 => prim!(Float32Type, |v, o| display(v, o)),
        DataType::Float64 => prim!(Float64Type, |v, o| display(v, o)),
        DataType::Decimal32(_, _) => decimal!(Decimal32Type),
        DataType::Decimal64(_, _) => decimal!(Decimal64Type),
        DataType::Decimal128(_, _) => decimal!(Decimal128Type),
        DataType::Decimal256(_, _) => decimal!(Decimal256Type),
        DataType::Date32 => prim!(Date32Type, |v, o| date(i64::from(v), o)),
        DataType::Date64 => prim!(Date64Type, |v, o| date(v.div_euclid(86_400_000), o)),
        DataType::Time32(TimeUnit::Second) => {
            prim!(Time32SecondType, |v, o| time_of_day(i64::from(v), 0, 1, o))
        }
        DataType::Time32(TimeUnit::Millisecond) => prim!(Time32MillisecondType, |v, o| {
            let (s, f) = split_units(i64::from(v), 1_000);
            time_of_day(s, f, 1_000, o);
        }),
        DataType::Time64(TimeUnit::Microsecond) => prim!(Time64MicrosecondType, |v, o| {
            let (s, f) = split_units(v, 1_000_000);
            time_of_day(s, f, 1_000_000, o);
        }),
        DataType::Time64(TimeUnit::Nanosecond) => prim!(Time64NanosecondType, |v, o| {
            let (s, f) = split_units(v, 1_000_000_000);
            time_of_day(s, f, 1_000_000_000, o);
        }),
        DataType::Timestamp(unit, tz) => {
            let utc = tz.is_some();
            match unit {
                TimeUnit::Second => prim!(TimestampSecondType, |v, o| timestamp(v, 1, utc, o)),
                TimeUnit::Millisecond => {
                    prim!(TimestampMillisecondType, |v, o| timestamp(v, 1_000, utc, o))
                }
                TimeUnit::Microsecond => prim!(TimestampMicrosecondType, |v, o| timestamp(
                    v, 1_000_000, utc, o
                )),
                TimeUnit::Nanosecond => prim!(TimestampNanosecondType, |v, o| timestamp(
                    v,
                    1_000_000_000,
                    utc,
                    o
                )),
            }
        }
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary_opt()?;
            let values = Arc::clone(d.values());
            let inner = cell_fn(&values)?;
            let keys = d.normalized_keys();
            Box::new(move |i, o: &mut Vec<u8>| {
                if let Some(&k) = keys.get(i) {
                    if k < values.len() && !values.is_null(k) {
                        inner(k, o);
                    }
                }
            })
        }
        _ => return None,
    })
}

/// A panic inside the Parquet decoder (corrupt input it did not anticipate) becomes an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the Parquet decoder failed on this input".to_string()))
}

/// The names of a schema's columns, or a schema error naming the first one that cannot be read
/// as text.
fn readable_columns(path: &Path, schema: &SchemaRef) -> Result<Vec<String>, SanitizeError> {
    let mut names = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        if let Some(why) = unsupported(f.data_type()) {
            return Err(SanitizeError::Schema {
                path: path.to_path_buf(),
                column: f.name().clone(),
                message: format!("type {}: {why}", f.data_type()),
            });
        }
        names.push(f.name().clone());
    }
    Ok(names)
}

/// Reads a Parquet file as rows of text cells.
pub(crate) struct RowReader {
    path: PathBuf,
    batches: ParquetRecordBatchReader,
    /// The current batch's columns and their cell writers.
    cols: Vec<(ArrayRef, CellFn)>,
    names: Vec<String>,
    batch_rows: usize,
    in_batch: usize,
    /// 0-based index in the file of the current batch's first row.
    batch_start: u64,
    cell: Vec<u8>,
}

impl RowReader {
    /// Opens the file and checks its schema; returns the reader and the column names.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<String>), SanitizeError> {
        let file = File::open(path).map_err(|e| SanitizeError::io(path, "cannot open", e))?;
        let opts = ArrowReaderOptions::new();
        let builder = guarded(|| {
            ParquetRecordBatchReaderBuilder::try_new_with_options(file, opts)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| SanitizeError::input(path, 0, format!("not a readable Parquet file: {e}")))?;
        let names = readable_columns(path, builder.schema())?;
        let batches = guarded(|| {
            builder
                .with_batch_size(READ_BATCH_ROWS)
                .build()
                .map_err(|e| e.to_string())
        })
        .map_err(|e| SanitizeError::input(path, 0, format!("not a readable Parquet file: {e}")))?;
        let reader = Self {
            path: path.to_path_buf(),
            batches,
            cols: Vec::new(),
            names: names.clone(),
            batch_rows: 0,
            in_batch: 0,
            batch_start: 0,
            cell: Vec::with_capacity(256),
        };
        Ok((reader, names))
    }

    fn row_err(&self, row: u64, message: String) -> SanitizeError {
        SanitizeError::Row {
            path: self.path.clone(),
            row,
            message,
        }
    }

    /// Decodes the next non-empty batch; `false` at the end of the file.
    fn next_batch(&mut self) -> Result<bool, SanitizeError> {
        loop {
            self.batch_start += u64::try_from(self.batch_rows).unwrap_or(u64::MAX);
            self.batch_rows = 0;
            self.in_batch = 0;
            self.cols.clear();
            let next = guarded(|| self.batches.next().transpose().map_err(|e| e.to_string()));
            let batch: RecordBatch = match next {
                Ok(Some(b)) => b,
                Ok(None) => return Ok(false),
                Err(e) => {
                    return Err(self.row_err(
                        self.batch_start,
                        format!("cannot decode the rows from here on: {e}"),
                    ));
                }
            };
            if batch.num_columns() != self.names.len() {
                return Err(self.row_err(
                    self.batch_start,
                    "a record batch does not match the file's schema".to_string(),
                ));
            }
            for (a, name) in batch.columns().iter().zip(&self.names) {
                let Some(f) = cell_fn(a) else {
                    return Err(SanitizeError::Schema {
                        path: self.path.clone(),
                        column: name.clone(),
                        message: format!("type {} cannot be sanitized as text", a.data_type()),
                    });
                };
                self.cols.push((Arc::clone(a), f));
            }
            self.batch_rows = batch.num_rows();
            if self.batch_rows > 0 {
                return Ok(true);
            }
        }
    }

    /// Reads the next row into `rec` (nulls as empty cells), each cell at most `max_field` bytes;
    /// returns the row's 0-based index in the file.
    pub(crate) fn next(
        &mut self,
        rec: &mut ByteRecord,
        max_field: usize,
    ) -> Result<Option<u64>, SanitizeError> {
        if self.in_batch >= self.batch_rows && !self.next_batch()? {
            return Ok(None);
        }
        let i = self.in_batch;
        self.in_batch += 1;
        let row = self.batch_start + u64::try_from(i).unwrap_or(u64::MAX);
        rec.clear();
        for (ci, (a, f)) in self.cols.iter().enumerate() {
            self.cell.clear();
            if !a.is_null(i) {
                f(i, &mut self.cell);
            }
            if self.cell.len() > max_field {
                let name = self.names.get(ci).map_or("", String::as_str);
                let message = format!(
                    "column `{name}` holds {} bytes, over the limit of {max_field}",
                    self.cell.len()
                );
                return Err(self.row_err(row, message));
            }
            rec.push_field(&self.cell);
        }
        Ok(Some(row))
    }
}

/// Writes rows of text cells as a Parquet file of nullable UTF-8 columns (snappy-compressed); an
/// empty cell is written as null.
pub(crate) struct RowWriter {
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    builders: Vec<StringBuilder>,
    rows: usize,
    bytes: usize,
}

impl RowWriter {
    pub(crate) fn create(path: &Path, columns: &[&str]) -> Result<Self, SanitizeError> {
        let file = File::create(path).map_err(|e| SanitizeError::io(path, "cannot create", e))?;
        let schema: SchemaRef = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(*c, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .build();
        let writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))
            .map_err(|e| SanitizeError::io(path, "cannot write", std::io::Error::other(e)))?;
        Ok(Self {
            path: path.to_path_buf(),
            schema,
            writer,
            builders: columns.iter().map(|_| StringBuilder::new()).collect(),
            rows: 0,
            bytes: 0,
        })
    }

    fn werr(&self, e: impl std::fmt::Display) -> SanitizeError {
        SanitizeError::io(
            &self.path,
            "cannot write",
            std::io::Error::other(e.to_string()),
        )
    }

    pub(crate) fn write(&mut self, rec: &ByteRecord) -> Result<(), SanitizeError> {
        if rec.len() != self.builders.len() {
            return Err(self.werr("a row does not have one cell per output column"));
        }
        for (b, v) in self.builders.iter_mut().zip(rec.iter()) {
            if v.is_empty() {
                b.append_null();
            } else {
                let s = std::str::from_utf8(v).map_err(|_| {
                    SanitizeError::io(
                        &self.path,
                        "cannot write",
                        std::io::Error::other("an output cell is not UTF-8"),
                    )
                })?;
                b.append_value(s);
                self.bytes += v.len();
            }
        }
        self.rows += 1;
        if self.rows >= WRITE_BATCH_ROWS || self.bytes >= WRITE_BATCH_BYTES {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), SanitizeError> {
        if self.rows == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let batch =
            RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(|e| self.werr(e))?;
        self.writer.write(&batch).map_err(|e| self.werr(e))?;
        self.rows = 0;
        self.bytes = 0;
        Ok(())
    }

    /// Writes the remaining rows and the footer; returns the file.
    pub(crate) fn finish(mut self) -> Result<File, SanitizeError> {
        self.flush_batch()?;
        let path = self.path;
        self.writer
            .into_inner()
            .map_err(|e| SanitizeError::io(&path, "cannot write", std::io::Error::other(e)))
    }
}

/// The column names of a Parquet file held in memory (`path` names it in errors), checked as
/// [`RowReader::open`] checks a file's schema.
pub(crate) fn columns_in(path: &Path, bytes: &[u8]) -> Result<Vec<String>, SanitizeError> {
    let data = bytes::Bytes::copy_from_slice(bytes);
    let builder =
        guarded(|| ParquetRecordBatchReaderBuilder::try_new(data).map_err(|e| e.to_string()))
            .map_err(|e| {
                SanitizeError::input(path, 0, format!("not a readable Parquet file: {e}"))
            })?;
    readable_columns(path, builder.schema())
}

/// A Parquet file held in memory reduced to the named top-level columns, in the file's column
/// order, each keeping its Arrow type; every row is kept. An unknown column is a schema error.
pub(crate) fn project(
    path: &Path,
    bytes: &[u8],
    columns: &[String],
) -> Result<Vec<u8>, SanitizeError> {
    let data = bytes::Bytes::copy_from_slice(bytes);
    let bad =
        |m: String| SanitizeError::input(path, 0, format!("not a readable Parquet file: {m}"));
    let builder =
        guarded(|| ParquetRecordBatchReaderBuilder::try_new(data).map_err(|e| e.to_string()))
            .map_err(bad)?;
    let fields = builder.schema().fields().clone();
    let mut roots = Vec::with_capacity(columns.len());
    for c in columns {
        let i = fields
            .iter()
            .position(|f| f.name() == c)
            .ok_or_else(|| SanitizeError::Schema {
                path: path.to_path_buf(),
                column: c.clone(),
                message: "no such column in the file's schema".into(),
            })?;
        roots.push(i);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = guarded(|| {
        builder
            .with_projection(mask)
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| e.to_string())
    })
    .map_err(bad)?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let werr = |e: String| {
        SanitizeError::io(
            path,
            "cannot write the projection",
            std::io::Error::other(e),
        )
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .build();
    let mut writer =
        ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(|e| werr(e.to_string()))?;
    let mut rows: u64 = 0;
    for batch in reader {
        let batch = batch.map_err(|e| SanitizeError::Row {
            path: path.to_path_buf(),
            row: rows,
            message: format!("cannot decode the rows from here: {e}"),
        })?;
        rows += u64::try_from(batch.num_rows()).unwrap_or(u64::MAX);
        writer.write(&batch).map_err(|e| werr(e.to_string()))?;
    }
    writer.into_inner().map_err(|e| werr(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut o = Vec::new();
        f(&mut o);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn dates_times_and_timestamps_have_the_csv_text_form() {
        assert_eq!(text(|o| date(0, o)), "1970-01-01");
        assert_eq!(text(|o| date(-1, o)), "1969-12-31");
        assert_eq!(
            text(|o| timestamp(1_550_390_946, 1, true, o)),
            "2019-02-17T08:09:06Z"
        );
        assert_eq!(
            text(|o| timestamp(1_550_390_946_000, 1_000, true, o)),
            "2019-02-17T08:09:06Z"
        );
        assert_eq!(
            text(|o| timestamp(1_550_390_946_250, 1_000, false, o)),
            "2019-02-17T08:09:06.250"
        );
        assert_eq!(
            text(|o| timestamp(-1, 1_000_000, true, o)),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            text(|o| time_of_day(3_723, 5, 1_000_000_000, o)),
            "01:02:03.000000005"
        );
    }

    #[test]
    fn nested_and_binary_types_are_refused() {
        let item = Arc::new(Field::new("item", DataType::Utf8, true));
        assert!(unsupported(&DataType::List(item)).is_some_and(|m| m.contains("list")));
        assert!(unsupported(&DataType::Struct(Vec::<Field>::new().into()))
            .is_some_and(|m| m.contains("struct")));
        assert!(unsupported(&DataType::Binary).is_some_and(|m| m.contains("binary")));
        assert!(unsupported(&DataType::Timestamp(
            TimeUnit::Millisecond,
            Some("+00:00".into())
        ))
        .is_none());
    }
}
