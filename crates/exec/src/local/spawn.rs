//! Starting run wrappers at a lower CPU priority without a `nice` program in between: on Linux
//! a thread's niceness is its own and a process it starts inherits it, so a wrapper started from
//! a thread niced below the control plane runs, with everything it starts, at that priority from
//! its first instruction, and the control plane's other threads keep theirs.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc;

/// A command to start, and where its child goes.
type Request = (Command, mpsc::SyncSender<io::Result<Child>>);

/// A thread that starts commands at a lower CPU priority than the control plane's.
#[derive(Debug)]
pub(super) struct NicedSpawner {
    tx: mpsc::Sender<Request>,
}

impl NicedSpawner {
    /// A thread whose niceness is `by` above this thread's (at most 19, the lowest priority);
    /// `None` where a thread's niceness is not its own (not Linux) or cannot be set.
    pub(super) fn new(by: u8) -> Option<Self> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        let own = rustix::process::getpriority_process(None).ok()?;
        let want = own.saturating_add(i32::from(by)).min(19);
        let (ready_tx, ready_rx) = mpsc::sync_channel::<bool>(1);
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("tidegate-launch".into())
            .spawn(move || {
                // `None`: this thread only (Linux gives each thread its own niceness).
                let niced = rustix::process::setpriority_process(None, want).is_ok()
                    && rustix::process::getpriority_process(None).ok() == Some(want);
                let _ = ready_tx.send(niced);
                if !niced {
                    return;
                }
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok()?;
        // The calling thread must have kept its own priority.
        let kept = rustix::process::getpriority_process(None).ok() == Some(own);
        (ready_rx.recv().ok()? && kept).then_some(Self { tx })
    }

    /// Starts `cmd` from the niced thread.
    pub(super) fn spawn(&self, cmd: Command) -> io::Result<Child> {
        let gone = || io::Error::other("the thread that starts runs has ended");
        let (reply, child) = mpsc::sync_channel(1);
        self.tx.send((cmd, reply)).map_err(|_| gone())?;
        child.recv().map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_started_process_is_niced_and_the_caller_is_not() {
        let own = rustix::process::getpriority_process(None).unwrap();
        let sp = NicedSpawner::new(7);
        if !cfg!(target_os = "linux") {
            assert!(sp.is_none());
            return;
        }
        let sp = sp.expect("a niced thread on Linux");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("cut -d' ' -f19 /proc/self/stat")
            .stdout(std::process::Stdio::piped());
        let out = sp.spawn(cmd).unwrap().wait_with_output().unwrap();
        let nice: i32 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(nice, (own + 7).min(19));
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), own);
    }
}
