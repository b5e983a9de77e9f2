//! The wall clock, read only at the edge (commands); library cores take the time as a parameter.

use miette::miette;

/// Current Unix time in seconds; `TIDEGATE_NOW` overrides it (for reproducible drills).
///
/// # Errors
/// If `TIDEGATE_NOW` is not a number or the system clock is before 1970.
pub fn now() -> miette::Result<u64> {
    if let Ok(v) = std::env::var("TIDEGATE_NOW") {
        return v
            .trim()
            .parse()
            .map_err(|_| miette!("TIDEGATE_NOW must be Unix seconds, got {v:?}"));
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|e| miette!("system clock is before 1970: {e}"))
}

/// Milliseconds since the Unix epoch as `HH:MM:SS.mmm` UTC (for event lists).
pub fn format_ms(ms: i64) -> String {
    let day_ms = ms.rem_euclid(86_400_000);
    let (h, m, s, milli) = (
        day_ms / 3_600_000,
        (day_ms / 60_000) % 60,
        (day_ms / 1000) % 60,
        day_ms % 1000,
    );
    format!("{h:02}:{m:02}:{s:02}.{milli:03}")
}
