//! Table files, CSV or Parquet, as rows of text cells: one reader and one writer whatever the
//! format, so the engine's row pipeline (transforms, k-anonymity, residual scan) is the same for
//! both. The format is the file's extension: `.parquet` is Parquet, anything else CSV.

use std::fs::File;
use std::path::{Path, PathBuf};

use csv::ByteRecord;

use crate::parquet_io;
use crate::SanitizeError;

/// A table file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Format {
    Csv,
    Parquet,
}

impl Format {
    /// The format of a file, by its extension.
    pub(crate) fn of(path: &Path) -> Self {
        if path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("parquet"))
        {
            Self::Parquet
        } else {
            Self::Csv
        }
    }

    /// Whether a file in an input directory is a table: `*.csv` or `*.parquet`.
    pub(crate) fn is_table(path: &Path) -> bool {
        path.extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("csv") || x.eq_ignore_ascii_case("parquet"))
    }
}

fn csv_err(path: &Path, e: &csv::Error) -> SanitizeError {
    let line = e.position().map_or(0, csv::Position::line);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("ragged row: {len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Io(io) => format!("cannot read: {io}"),
        _ => format!("malformed CSV: {e}"),
    };
    SanitizeError::input(path, line, message)
}

fn csv_reader(path: &Path) -> Result<csv::Reader<File>, SanitizeError> {
    let f = File::open(path).map_err(|e| SanitizeError::io(path, "cannot open", e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .buffer_capacity(1 << 18)
        .from_reader(f))
}

/// Reads the next CSV record, checking UTF-8 and the field size; returns its line.
fn next_csv_record(
    rdr: &mut csv::Reader<File>,
    rec: &mut ByteRecord,
    path: &Path,
    max_field: usize,
) -> Result<Option<u64>, SanitizeError> {
    match rdr.read_byte_record(rec) {
        Ok(false) => Ok(None),
        Ok(true) => {
            let line = rec.position().map_or(0, csv::Position::line);
            if let Err(e) = std::str::from_utf8(rec.as_slice()) {
                return Err(SanitizeError::input(
                    path,
                    line,
                    format!(
                        "invalid UTF-8 (byte {} of the row's fields)",
                        e.valid_up_to()
                    ),
                ));
            }
            if let Some((i, f)) = rec.iter().enumerate().find(|(_, f)| f.len() > max_field) {
                return Err(SanitizeError::input(
                    path,
                    line,
                    format!(
                        "field {} is {} bytes, over the limit of {max_field}",
                        i + 1,
                        f.len()
                    ),
                ));
            }
            Ok(Some(line))
        }
        Err(e) => Err(csv_err(path, &e)),
    }
}

enum Source {
    Csv(csv::Reader<File>),
    Parquet(Box<parquet_io::RowReader>),
}

/// Rows of one table file. Each row has a position: its line for CSV (1 is the header), its
/// 0-based row index for Parquet; errors about a row name the file and that position.
pub(crate) struct TableReader {
    path: PathBuf,
    format: Format,
    max_field: usize,
    source: Source,
}

impl TableReader {
    /// Opens a table file; returns the reader and the column names (the header).
    pub(crate) fn open(
        path: &Path,
        max_field: usize,
    ) -> Result<(Self, Vec<String>), SanitizeError> {
        let format = Format::of(path);
        let (source, header) = match format {
            Format::Csv => {
                let mut rdr = csv_reader(path)?;
                let mut rec = ByteRecord::new();
                if next_csv_record(&mut rdr, &mut rec, path, max_field)?.is_none() {
                    return Err(SanitizeError::input(path, 1, "empty file: no header row"));
                }
                let header = rec
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .collect();
                (Source::Csv(rdr), header)
            }
            Format::Parquet => {
                let (rdr, header) = parquet_io::RowReader::open(path)?;
                (Source::Parquet(Box::new(rdr)), header)
            }
        };
        Ok((
            Self {
                path: path.to_path_buf(),
                format,
                max_field,
                source,
            },
            header,
        ))
    }

    /// Reads the next row into `rec`; returns its position, `None` at the end.
    pub(crate) fn next(&mut self, rec: &mut ByteRecord) -> Result<Option<u64>, SanitizeError> {
        match &mut self.source {
            Source::Csv(r) => next_csv_record(r, rec, &self.path, self.max_field),
            Source::Parquet(r) => r.next(rec, self.max_field),
        }
    }

    /// An error about the row at `pos`.
    pub(crate) fn row_error(&self, pos: u64, message: impl Into<String>) -> SanitizeError {
        match self.format {
            Format::Csv => SanitizeError::input(&self.path, pos, message),
            Format::Parquet => SanitizeError::Row {
                path: self.path.clone(),
                row: pos,
                message: message.into(),
            },
        }
    }

    /// An error about the header (the schema, for Parquet), naming `column`.
    pub(crate) fn header_error(&self, column: &str, message: impl Into<String>) -> SanitizeError {
        match self.format {
            Format::Csv => SanitizeError::input(&self.path, 1, message),
            Format::Parquet => SanitizeError::Schema {
                path: self.path.clone(),
                column: column.to_string(),
                message: message.into(),
            },
        }
    }
}

enum Sink {
    Csv(csv::Writer<File>),
    Parquet(parquet_io::RowWriter),
}

/// Writes rows of one output table in a format.
pub(crate) struct TableWriter {
    path: PathBuf,
    sink: Sink,
}

impl TableWriter {
    /// Creates the file and writes the header (CSV) or sets the schema (Parquet).
    pub(crate) fn create(
        path: &Path,
        format: Format,
        columns: &[&str],
    ) -> Result<Self, SanitizeError> {
        let sink = match format {
            Format::Csv => {
                let f =
                    File::create(path).map_err(|e| SanitizeError::io(path, "cannot create", e))?;
                let mut w = csv::WriterBuilder::new()
                    .buffer_capacity(1 << 18)
                    .from_writer(f);
                w.write_record(columns).map_err(|e| {
                    SanitizeError::io(path, "cannot write", std::io::Error::other(e))
                })?;
                Sink::Csv(w)
            }
            Format::Parquet => Sink::Parquet(parquet_io::RowWriter::create(path, columns)?),
        };
        Ok(Self {
            path: path.to_path_buf(),
            sink,
        })
    }

    pub(crate) fn write(&mut self, rec: &ByteRecord) -> Result<(), SanitizeError> {
        match &mut self.sink {
            Sink::Csv(w) => w.write_byte_record(rec).map_err(|e| {
                SanitizeError::io(&self.path, "cannot write", std::io::Error::other(e))
            }),
            Sink::Parquet(w) => w.write(rec),
        }
    }

    /// Completes and syncs the file; returns its size in bytes.
    pub(crate) fn finish(self) -> Result<u64, SanitizeError> {
        let path = self.path;
        let file = match self.sink {
            Sink::Csv(w) => w.into_inner().map_err(|e| {
                SanitizeError::io(&path, "cannot write", std::io::Error::other(e.to_string()))
            })?,
            Sink::Parquet(w) => w.finish()?,
        };
        file.sync_all()
            .map_err(|e| SanitizeError::io(&path, "cannot sync", e))?;
        Ok(file.metadata().map(|m| m.len()).unwrap_or(0))
    }
}

/// Direct identifiers in a table file (CSV or Parquet), counted per column and kind: every cell
/// run through the identifier scanners (SSN, phone, e-mail, record, passport, licence and card
/// numbers). Counts only, never values.
///
/// # Errors
/// A table that cannot be read, named with its line or row.
pub fn identifier_census(
    path: &Path,
) -> Result<Vec<(String, crate::scan::Kind, u64)>, SanitizeError> {
    let (mut rdr, header) = TableReader::open(path, 1 << 20)?;
    let mut scanner = crate::scan::Scanner::default();
    let mut counts: std::collections::BTreeMap<(usize, crate::scan::Kind), u64> =
        std::collections::BTreeMap::new();
    let mut rec = ByteRecord::new();
    while rdr.next(&mut rec)?.is_some() {
        for (i, cell) in rec.iter().enumerate() {
            scanner.scan(cell, |k, _, _| *counts.entry((i, k)).or_default() += 1);
        }
    }
    Ok(counts
        .into_iter()
        .map(|((i, k), n)| {
            (
                header.get(i).cloned().unwrap_or_else(|| format!("#{i}")),
                k,
                n,
            )
        })
        .collect())
}

/// The column names of a table held in memory: the CSV header, or the Parquet schema's
/// top-level fields. `path` gives the format (by extension) and names the table in errors.
///
/// # Errors
/// A missing or malformed header, invalid UTF-8, not a readable Parquet file, or a Parquet column
/// that cannot be read as text.
pub fn table_columns(path: &Path, bytes: &[u8]) -> Result<Vec<String>, SanitizeError> {
    match Format::of(path) {
        Format::Parquet => parquet_io::columns_in(path, bytes),
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(bytes);
            let mut rec = ByteRecord::new();
            match r.read_byte_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(SanitizeError::input(path, 1, "empty file: no header row"))
                }
                Err(e) => return Err(csv_err(path, &e)),
            }
            rec.iter()
                .map(|h| {
                    std::str::from_utf8(h)
                        .map(str::to_string)
                        .map_err(|_| SanitizeError::input(path, 1, "invalid UTF-8 in the header"))
                })
                .collect()
        }
    }
}

/// A table held in memory reduced to the named columns (which must be in the table, in its
/// column order), every row kept, in the table's format: CSV rows keep their cells' bytes,
/// Parquet columns keep their types.
///
/// # Errors
/// An unknown column, a malformed row (named by its line), an unreadable Parquet file.
pub fn project_table(
    path: &Path,
    bytes: &[u8],
    columns: &[String],
) -> Result<Vec<u8>, SanitizeError> {
    if Format::of(path) == Format::Parquet {
        return parquet_io::project(path, bytes, columns);
    }
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let header = r.byte_headers().map_err(|e| csv_err(path, &e))?.clone();
    let mut idx = Vec::with_capacity(columns.len());
    for c in columns {
        let i = header
            .iter()
            .position(|h| h == c.as_bytes())
            .ok_or_else(|| {
                SanitizeError::input(path, 1, format!("no column {c:?} in the header"))
            })?;
        idx.push(i);
    }
    let wbad = |e: csv::Error| {
        SanitizeError::io(
            path,
            "cannot write the projection",
            std::io::Error::other(e),
        )
    };
    let mut w = csv::Writer::from_writer(Vec::with_capacity(
        bytes.len() / header.len().max(1) * columns.len(),
    ));
    w.write_record(columns).map_err(wbad)?;
    let mut rec = ByteRecord::new();
    let mut row = ByteRecord::new();
    while r
        .read_byte_record(&mut rec)
        .map_err(|e| csv_err(path, &e))?
    {
        row.clear();
        for &i in &idx {
            row.push_field(rec.get(i).unwrap_or_default());
        }
        w.write_byte_record(&row).map_err(wbad)?;
    }
    w.into_inner().map_err(|e| {
        SanitizeError::io(
            path,
            "cannot write the projection",
            std::io::Error::other(e.to_string()),
        )
    })
}
