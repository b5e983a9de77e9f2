//! One cgroup v2 per run: everything a job starts (background children, `setsid`, double forks)
//! stays in it, since only the control plane's user may move processes between cgroups, and
//! `cgroup.kill` ends all of them at once. The cgroup2 mount is found in `/proc/self/mountinfo`
//! (pure v2 at `/sys/fs/cgroup`, or hybrid at `/sys/fs/cgroup/unified`); run cgroups go under the
//! control plane's own cgroup, in `tidegate/`.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
use serde::{Deserialize, Serialize};

use super::procfs;

/// A cgroup: where it is in the file system, and its path as `/proc/<pid>/cgroup` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cgroup {
    /// Directory in the cgroup2 mount.
    pub dir: PathBuf,
    /// Its path in the cgroup hierarchy (`0::PATH`).
    pub path: String,
}

/// Undoes the octal escapes (`\040` for a space) of a mountinfo field.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = (b == b'\\')
            .then(|| bytes.get(i + 1..i + 4))
            .flatten()
            .filter(|o| o.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|o| std::str::from_utf8(o).ok())
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first cgroup2 mount in a mountinfo text: (root of the mount in the hierarchy, mount
/// point).
pub(crate) fn cgroup2_mount(mountinfo: &str) -> Option<(String, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_ascii_whitespace().next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = left.split_ascii_whitespace().collect();
        let root = unescape(fields.get(3)?);
        let point = unescape(fields.get(4)?);
        Some((root, PathBuf::from(point)))
    })
}

/// Where this process's run cgroups go: `tidegate/` under its own cgroup, created if missing.
/// `None` (with the reason) where there is no cgroup2 mount, no `cgroup.kill` (kernels before
/// 5.14), or this process may not create cgroups.
pub(crate) fn base() -> Result<Cgroup, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let (root, point) = cgroup2_mount(&mountinfo).ok_or("no cgroup2 file system is mounted")?;
    let own = procfs::cgroup_of(i32::try_from(std::process::id()).unwrap_or(0))
        .ok_or("this process has no cgroup v2 path")?;
    let rel = if root == "/" {
        own.as_str()
    } else {
        own.strip_prefix(root.as_str())
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| format!("this process's cgroup {own} is outside the mount's {root}"))?
    };
    let own_dir = point.join(rel.trim_start_matches('/'));
    let base = Cgroup {
        dir: own_dir.join("tidegate"),
        path: format!("{}/tidegate", own.trim_end_matches('/')),
    };
    match fs::create_dir(&base.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", base.dir.display())),
    }
    Ok(base)
}

impl Cgroup {
    /// A new child cgroup `name` of this one, checked to have `cgroup.kill`.
    pub(super) fn create_child(&self, name: &str) -> io::Result<Cgroup> {
        let child = Cgroup {
            dir: self.dir.join(name),
            path: format!("{}/{name}", self.path),
        };
        fs::create_dir(&child.dir)?;
        if !child.dir.join("cgroup.kill").exists() {
            let _ = fs::remove_dir(&child.dir);
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "cgroup.kill is missing (kernel older than 5.14)",
            ));
        }
        Ok(child)
    }

    /// Whether the cgroup directory exists.
    pub(super) fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// The processes in it now.
    pub(super) fn members(&self) -> Vec<i32> {
        read_pids(&self.dir.join("cgroup.procs"))
    }

    /// Whether any process is in it (`None` when it cannot be read, e.g. removed).
    pub(super) fn populated(&self) -> Option<bool> {
        let text = fs::read_to_string(self.dir.join("cgroup.events")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("populated "))
            .map(|v| v.trim() == "1")
    }

    /// SIGKILL to every process in it, at once (`cgroup.kill`).
    pub(super) fn kill(&self) -> io::Result<()> {
        fs::write(self.dir.join("cgroup.kill"), b"1")
    }

    /// SIGTERM to every process in it not signalled yet. Each is opened as a pidfd and checked to
    /// be in this cgroup before the signal goes through the pidfd, so a pid reused in between is
    /// never signalled.
    pub(super) fn term_members(&self, signalled: &mut HashSet<i32>) {
        for pid in self.members() {
            if signalled.contains(&pid) {
                continue;
            }
            let Some(p) = Pid::from_raw(pid) else {
                continue;
            };
            let Ok(fd) = pidfd_open(p, PidfdFlags::empty()) else {
                continue;
            };
            if procfs::cgroup_of(pid).as_deref() != Some(self.path.as_str()) {
                continue;
            }
            if pidfd_send_signal(&fd, Signal::TERM).is_ok() {
                signalled.insert(pid);
            }
        }
    }

    /// Kills what is left and removes the cgroup; `Ok(true)` once it is gone.
    pub(super) fn kill_and_remove(&self) -> bool {
        if !self.exists() {
            return true;
        }
        if self.populated() != Some(false) {
            let _ = self.kill();
        }
        match fs::remove_dir(&self.dir) {
            Ok(()) => true,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }
    }
}

fn read_pids(path: &Path) -> Vec<i32> {
    fs::read_to_string(path)
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_in_hybrid_and_pure_layouts() {
        let hybrid =
            "30 25 0:26 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,name=systemd\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(("/".into(), PathBuf::from("/sys/fs/cgroup/unified")))
        );
        let pure =
            "27 22 0:23 /some\\040dir /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount(pure),
            Some(("/some dir".into(), PathBuf::from("/sys/fs/cgroup")))
        );
        assert_eq!(cgroup2_mount("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"), None);
    }
}
