//! Reading Slurm's answers: `scontrol show job -o` records, `sacct -c` rows, `ExitCode=N:S`, and
//! how each Slurm job state maps to a [`RunStatus`].
//!
//! Mapping (Slurm 22.05 state names; a `+` suffix or a trailing reason such as `CANCELLED by 0`
//! is ignored):
//! - PENDING, CONFIGURING, RUNNING, COMPLETING, SUSPENDED, STAGE_OUT, SIGNALING, RESIZING,
//!   REQUEUED, REQUEUE_FED, REQUEUE_HOLD, RESV_DEL_HOLD, SPECIAL_EXIT → `Running` (started and not
//!   ended: a requeued job will run again under the same Slurm job id);
//! - COMPLETED → `Exited { code }`; FAILED, OUT_OF_MEMORY, TIMEOUT, DEADLINE → `Exited { code }`
//!   with Slurm's exit code, or minus the signal that ended it (TIMEOUT without either: -15, the
//!   SIGTERM Slurm sends at the limit; FAILED without either: 1). These are the job's own outcome,
//!   so a scheduler must not silently retry them;
//! - CANCELLED → `Cancelled`;
//! - NODE_FAIL, BOOT_FAIL, PREEMPTED (not requeued), LAUNCH_FAILED and unknown states → `Lost`
//!   with the state and Slurm's `Reason`: the infrastructure failed, not the job.

use std::collections::BTreeMap;

use tidegate_exec::RunStatus;

/// One `scontrol show job -o` record as keys and values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobRecord {
    /// Every `Key=Value` pair (a value with spaces keeps them).
    pub fields: BTreeMap<String, String>,
}

impl JobRecord {
    /// Parses one line of `scontrol show job -o` (or a jobcomp/filetxt line).
    pub fn parse(line: &str) -> Self {
        let mut fields = BTreeMap::new();
        let mut last: Option<String> = None;
        for tok in line.split_whitespace() {
            match tok.split_once('=') {
                Some((k, v))
                    if !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | ':' | '_')) =>
                {
                    fields.insert(k.to_owned(), v.to_owned());
                    last = Some(k.to_owned());
                }
                _ => {
                    if let Some(v) = last.as_ref().and_then(|k| fields.get_mut(k)) {
                        v.push(' ');
                        v.push_str(tok);
                    }
                }
            }
        }
        Self { fields }
    }

    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// The job state (first word).
    pub fn state(&self) -> Option<&str> {
        self.get("JobState")
            .and_then(|s| s.split_whitespace().next())
    }
}

/// Parses Slurm's `ExitCode=code:signal` into the executor's convention: the code, or minus the
/// signal when a signal ended the job. `None` when neither is set (0:0) or unparsable.
pub fn exit_code(s: &str) -> Option<i32> {
    let (code, sig) = s.trim().split_once(':').unwrap_or((s.trim(), "0"));
    let code: i32 = code.parse().ok()?;
    let sig: i32 = sig.parse().unwrap_or(0);
    if sig != 0 {
        Some(-sig)
    } else if code != 0 {
        Some(code)
    } else {
        None
    }
}

/// Maps a Slurm state, its exit code field and its reason to a [`RunStatus`].
pub fn map_state(
    slurm_id: &str,
    state: &str,
    exit: Option<&str>,
    reason: Option<&str>,
) -> RunStatus {
    let base = state
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches('+')
        .to_ascii_uppercase();
    let code = exit.and_then(exit_code);
    let lost = |what: &str| {
        let why = reason
            .filter(|r| !r.is_empty() && *r != "None")
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        RunStatus::Lost {
            reason: format!("Slurm job {slurm_id} {what}{why}"),
        }
    };
    match base.as_str() {
        "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "SUSPENDED" | "STAGE_OUT"
        | "SIGNALING" | "RESIZING" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD"
        | "RESV_DEL_HOLD" | "SPECIAL_EXIT" => RunStatus::Running,
        "COMPLETED" => RunStatus::Exited {
            code: code.unwrap_or(0),
        },
        "FAILED" => RunStatus::Exited {
            code: code.unwrap_or(1),
        },
        "OUT_OF_MEMORY" => RunStatus::Exited {
            code: code.unwrap_or(-9),
        },
        "TIMEOUT" | "DEADLINE" => RunStatus::Exited {
            code: code.unwrap_or(-15),
        },
        "CANCELLED" => RunStatus::Cancelled,
        "NODE_FAIL" => lost("failed: its node failed"),
        "BOOT_FAIL" => lost("failed: its node did not boot"),
        "PREEMPTED" => lost("was preempted and not requeued"),
        "LAUNCH_FAILED" => lost("failed to launch"),
        other => lost(&format!("is in an unexpected state {other:?}")),
    }
}

/// Parses `sacct -c -j ID -n -P -o JobID,State,ExitCode` rows: the row for `slurm_id` as
/// (state, exit code), the last one when the job was requeued.
pub fn parse_sacct(out: &str, slurm_id: &str) -> Option<(String, String)> {
    out.lines().rev().find_map(|l| {
        let mut parts = l.trim().split('|');
        let id = parts.next()?;
        let state = parts.next()?;
        let exit = parts.next().unwrap_or("");
        (id == slurm_id).then(|| (state.to_owned(), exit.to_owned()))
    })
}

/// Parses the `--parsable` answer of sbatch: `ID` or `ID;cluster`.
pub fn parse_sbatch_id(out: &str) -> Option<String> {
    let line = out.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let id = line.split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_')).then(|| id.to_owned())
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_executor_convention() {
        assert_eq!(exit_code("0:0"), None);
        assert_eq!(exit_code("3:0"), Some(3));
        assert_eq!(exit_code("0:15"), Some(-15));
        assert_eq!(exit_code("junk"), None);
    }

    #[test]
    fn states_map_to_run_status() {
        assert_eq!(
            map_state("1", "PENDING", Some("0:0"), Some("Priority")),
            RunStatus::Running
        );
        assert_eq!(map_state("1", "REQUEUED", None, None), RunStatus::Running);
        assert_eq!(
            map_state("1", "COMPLETED", Some("0:0"), None),
            RunStatus::Exited { code: 0 }
        );
        assert_eq!(
            map_state("1", "FAILED", Some("3:0"), None),
            RunStatus::Exited { code: 3 }
        );
        assert_eq!(
            map_state("1", "TIMEOUT", Some("0:0"), None),
            RunStatus::Exited { code: -15 }
        );
        assert_eq!(
            map_state("1", "CANCELLED by 0", Some("0:15"), None),
            RunStatus::Cancelled
        );
        assert_eq!(
            map_state("1", "CANCELLED+", None, None),
            RunStatus::Cancelled
        );
        match map_state("7", "NODE_FAIL", Some("0:0"), Some("NodeDown")) {
            RunStatus::Lost { reason } => assert!(
                reason.contains("node failed") && reason.contains("NodeDown"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map_state("1", "PREEMPTED", None, None),
            RunStatus::Lost { .. }
        ));
    }

    #[test]
    fn records_and_rows_parse() {
        let r = JobRecord::parse("JobId=12 JobName=a b JobState=RUNNING Reason=None ExitCode=0:0 Comment=tidegate:x  StdOut=/t/o");
        assert_eq!(r.get("JobName"), Some("a b"));
        assert_eq!(r.state(), Some("RUNNING"));
        assert_eq!(r.get("Comment"), Some("tidegate:x"));
        assert_eq!(
            parse_sacct("11|COMPLETED|0:0\n12|FAILED|3:0\n", "12"),
            Some(("FAILED".into(), "3:0".into()))
        );
        assert_eq!(parse_sbatch_id("42\n"), Some("42".into()));
        assert_eq!(parse_sbatch_id("42;cl\n"), Some("42".into()));
        assert_eq!(parse_sbatch_id("Submitted batch job 42"), None);
    }
}
