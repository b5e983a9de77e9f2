//! Output formats shared by commands (`--output text|json`) and the fleet-directory default.

use std::path::PathBuf;

use clap::ValueEnum;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// For programs: one JSON document on stdout.
    Json,
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> miette::Result<()> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| miette::miette!("cannot encode JSON output: {e}"))?;
    println!("{s}");
    Ok(())
}

/// The fleet directory: the flag, else `$TIDEGATE_FLEET` (handled by clap), else
/// `./examples/fleet` when it exists.
pub fn fleet_dir(flag: Option<PathBuf>) -> miette::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    let default = PathBuf::from("examples/fleet");
    if default.join("fleet.yaml").exists() {
        return Ok(default);
    }
    Err(miette::miette!(
        help = "pass --fleet DIR (a directory with fleet.yaml, zones/*.yaml, policies/*.cedar) or set TIDEGATE_FLEET",
        "no fleet directory given and ./examples/fleet does not exist"
    ))
}
