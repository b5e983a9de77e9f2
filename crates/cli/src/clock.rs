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
