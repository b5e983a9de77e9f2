//! Who a zone's jobs run as. A control plane running as root never runs a job as root: the zone's
//! `run_as` user, or `nobody` when it names none. One not running as root cannot switch users, so
//! its jobs run as itself (and can then tamper with its files: a warning says so) and a `run_as`
//! naming anyone else is refused.

use std::process::Command;

/// The user a job runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// User name.
    pub name: String,
    /// Whether the job switches to this user (the control plane is root); otherwise it runs as
    /// the control plane's own user.
    pub switch: bool,
}

/// A user as the user database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
}

/// The user jobs run as on a root control plane whose zone names none.
pub(crate) const DEFAULT_USER: &str = "nobody";

/// Whether `name` is a plain user name (as `run_as` must be: not a number, nothing option-like).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Decides who jobs run as. `euid`/`egid` are the control plane's; `lookup` reads the user
/// database. `Ok((identity, warning))`: the warning is set when jobs run as the control plane's
/// own user.
pub(crate) fn decide(
    run_as: Option<&str>,
    euid: u32,
    egid: u32,
    self_name: impl FnOnce() -> String,
    lookup: impl Fn(&str) -> Result<Option<User>, String>,
) -> Result<(Identity, Option<String>), String> {
    if let Some(name) = run_as {
        if !valid_name(name) {
            return Err(format!(
                "run_as `{name}` is not a user name (a letter or '_', then letters, digits, '_', '-' or '.', at most 32)"
            ));
        }
        if name == "root" {
            return Err(
                "run_as `root` is refused: jobs never run as root; name an unprivileged user"
                    .into(),
            );
        }
    }
    let find = |name: &str| -> Result<User, String> {
        lookup(name)?.ok_or_else(|| {
            format!("run_as `{name}`: no such user (create it, or name another in the zone's local backend)")
        })
    };
    if euid == 0 {
        let name = run_as.unwrap_or(DEFAULT_USER);
        let user = find(name)?;
        if user.uid == 0 {
            return Err(format!(
                "run_as `{name}` has user id 0: jobs never run as root; name an unprivileged user"
            ));
        }
        return Ok((
            Identity {
                uid: user.uid,
                gid: user.gid,
                name: name.to_owned(),
                switch: true,
            },
            None,
        ));
    }
    let name = match run_as {
        Some(name) => {
            let user = find(name)?;
            if user.uid != euid {
                return Err(format!(
                    "run_as `{name}` (uid {}): the control plane runs as uid {euid}, not as root, and cannot switch users; run it as root or name its own user",
                    user.uid
                ));
            }
            name.to_owned()
        }
        None => self_name(),
    };
    let warning = format!(
        "jobs run as the control plane's own user ({name}, uid {euid}) because it is not root: they can signal the control plane and write its files, including the executor's state; run the control plane as root with an unprivileged run_as user to isolate them"
    );
    Ok((
        Identity {
            uid: euid,
            gid: egid,
            name,
            switch: false,
        },
        Some(warning),
    ))
}

/// Parses one `/etc/passwd`-format line for `name`.
pub(crate) fn parse_passwd_line(line: &str, name: &str) -> Option<User> {
    let mut f = line.split(':');
    if f.next()? != name {
        return None;
    }
    let _password = f.next()?;
    let uid = f.next()?.parse().ok()?;
    let gid = f.next()?.parse().ok()?;
    Some(User { uid, gid })
}

/// Looks a user up through the system's user database (`getent passwd`, so NSS sources such as
/// LDAP count), or `/etc/passwd` where `getent` is missing.
pub(crate) fn lookup(name: &str) -> Result<Option<User>, String> {
    if !valid_name(name) {
        return Ok(None);
    }
    match Command::new("getent").arg("passwd").arg(name).output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| parse_passwd_line(l, name))),
        // 2: no such key.
        Ok(out) if out.status.code() == Some(2) => Ok(None),
        Ok(out) => Err(format!(
            "getent passwd {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = std::fs::read_to_string("/etc/passwd")
                .map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
            Ok(text.lines().find_map(|l| parse_passwd_line(l, name)))
        }
        Err(e) => Err(format!("cannot run getent: {e}")),
    }
}

/// The name of user `uid`, or the number where the database has none.
pub(crate) fn name_of(uid: u32) -> String {
    Command::new("getent")
        .arg("passwd")
        .arg(uid.to_string())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split(':')
                .next()
                .map(str::to_owned)
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn db(name: &str) -> Result<Option<User>, String> {
        Ok(match name {
            "nobody" => Some(User {
                uid: 65534,
                gid: 65534,
            }),
            "svc" => Some(User {
                uid: 1000,
                gid: 1000,
            }),
            "toor" => Some(User { uid: 0, gid: 0 }),
            _ => None,
        })
    }

    fn me() -> String {
        "svc".into()
    }

    #[test]
    fn root_runs_jobs_as_the_zone_user_or_nobody_never_root() {
        let (id, warn) = decide(None, 0, 0, me, db).unwrap();
        assert_eq!(
            (id.uid, id.name.as_str(), id.switch),
            (65534, "nobody", true)
        );
        assert!(warn.is_none());
        let (id, _) = decide(Some("svc"), 0, 0, me, db).unwrap();
        assert_eq!((id.uid, id.gid, id.switch), (1000, 1000, true));
        let e = decide(Some("root"), 0, 0, me, db).unwrap_err();
        assert!(e.contains("never run as root"), "{e}");
        let e = decide(Some("toor"), 0, 0, me, db).unwrap_err();
        assert!(e.contains("user id 0"), "{e}");
        let e = decide(Some("ghost"), 0, 0, me, db).unwrap_err();
        assert!(e.contains("no such user"), "{e}");
        let e = decide(Some("-x"), 0, 0, me, db).unwrap_err();
        assert!(e.contains("not a user name"), "{e}");
    }

    #[test]
    fn a_non_root_control_plane_runs_jobs_as_itself_with_a_warning() {
        let (id, warn) = decide(None, 1000, 1000, me, db).unwrap();
        assert_eq!((id.uid, id.switch, id.name.as_str()), (1000, false, "svc"));
        assert!(warn.unwrap().contains("not root"));
        let (id, warn) = decide(Some("svc"), 1000, 1000, me, db).unwrap();
        assert!(!id.switch && warn.is_some());
        let e = decide(Some("nobody"), 1000, 1000, me, db).unwrap_err();
        assert!(e.contains("cannot switch users"), "{e}");
        assert!(decide(Some("root"), 1000, 1000, me, db).is_err());
    }

    #[test]
    fn passwd_lines() {
        assert_eq!(
            parse_passwd_line(
                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
                "nobody"
            ),
            Some(User {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(
            parse_passwd_line("nobodyx:x:1:1::/:/bin/sh", "nobody"),
            None
        );
    }
}
