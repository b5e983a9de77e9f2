//! What `/proc` says about a process: its state, process group and start time, so that the
//! executor signals a process only after checking it is the one it started (a pid alone can be
//! reused; a pid with its start time since boot, on the same boot, cannot).

use std::fs;

use serde::{Deserialize, Serialize};

/// A process as the executor recorded it when it started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcId {
    /// Process id.
    pub pid: i32,
    /// Start time, clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
}

/// The fields of `/proc/<pid>/stat` the executor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Start time, clock ticks after boot.
    pub start: u64,
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted after its last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `rest` starts at field 3 (state); field 22 (starttime) is at index 19.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some(Stat { state, start })
}

/// `/proc/<pid>/stat`, if the process exists (a zombie too).
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time of a process now, to record it.
pub(crate) fn identify(pid: i32) -> Option<ProcId> {
    stat(pid).map(|s| ProcId {
        pid,
        start: s.start,
    })
}

impl ProcId {
    /// Whether the process still exists (possibly as a zombie) and is the one recorded. A zombie
    /// keeps its pid, so a group it leads can still be signalled safely.
    pub(super) fn exists(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start)
    }

    /// Whether the process recorded is still running (exists and is not a zombie).
    pub(super) fn running(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start && s.state != 'Z')
    }
}

/// The arguments a process was started with (`/proc/<pid>/cmdline`), if it exists.
pub(crate) fn cmdline(pid: i32) -> Option<Vec<String>> {
    if pid <= 0 {
        return None;
    }
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    // Each argument ends with a NUL; empty arguments count.
    let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
    Some(
        raw.split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The real user id of a process (`Uid:` in `/proc/<pid>/status`), if it exists.
pub(crate) fn uid_of(pid: i32) -> Option<u32> {
    if pid <= 0 {
        return None;
    }
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// This boot's id: a start time is only meaningful within one boot.
pub(crate) fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The cgroup v2 path of a process (`0::PATH` in `/proc/<pid>/cgroup`).
pub(crate) fn cgroup_of(pid: i32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn empty_arguments_keep_their_place_in_the_command_line() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5", "", "x"])
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let mut args = cmdline(pid);
        for _ in 0..200 {
            if args.as_ref().is_some_and(|a| a.len() == 5) {
                break; // exec'd
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            args = cmdline(pid);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(args.unwrap(), ["sh", "-c", "sleep 5", "", "x"]);
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text =
            "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start, 987_654);
        assert!(parse_stat("12 (x) S 1").is_none());
    }

    #[test]
    fn this_process_is_identified() {
        let me = identify(i32::try_from(std::process::id()).unwrap()).unwrap();
        assert!(me.running() && me.exists());
        let other = ProcId {
            start: me.start + 1,
            ..me
        };
        assert!(!other.exists(), "a different start time is another process");
        assert!(!boot_id().is_empty());
    }
}
