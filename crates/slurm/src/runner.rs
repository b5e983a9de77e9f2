//! How the executor runs Slurm's commands: through the [`Runner`] trait, so tests can substitute
//! fake `sbatch`/`squeue`/... scripts (a bin dir given to [`SystemRunner`]) or an in-memory fake.
//!
//! [`SystemRunner`] runs the real programs with blocking `std::process` (no async runtime) and a
//! per-call time limit: if slurmctld is dead, `squeue` and friends may block for a long time, and
//! an executor call must stay short. A watchdog thread kills a command that overruns; the caller
//! waits on the child itself, so a fast command (sbatch takes a few milliseconds) pays no polling
//! delay.

use std::fmt;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// What a finished command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CmdOutput {
    /// Exit code (`None` when killed by a signal, or by the time limit).
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
    /// Whether the time limit killed it.
    pub timed_out: bool,
}

impl CmdOutput {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Standard error and output together, trimmed (for messages).
    pub fn message(&self) -> String {
        let mut m = self.stderr.trim().to_owned();
        let out = self.stdout.trim();
        if !out.is_empty() {
            if !m.is_empty() {
                m.push_str("; ");
            }
            m.push_str(out);
        }
        if self.timed_out {
            m.push_str(" (timed out)");
        }
        m
    }
}

/// Runs one Slurm command. Implementations are shared between threads.
pub trait Runner: Send + Sync + fmt::Debug {
    /// Runs `program` (a bare name like `sbatch`) with `args` and returns its output. An `Err`
    /// means the program could not be run at all (not installed, not executable).
    fn run(&self, program: &str, args: &[String]) -> io::Result<CmdOutput>;
}

/// Runs the real programs, from `bin_dir` when given, else from `PATH`.
#[derive(Debug, Clone)]
pub struct SystemRunner {
    bin_dir: Option<PathBuf>,
    timeout: Duration,
}

impl Default for SystemRunner {
    fn default() -> Self {
        Self {
            bin_dir: None,
            timeout: Duration::from_secs(30),
        }
    }
}

impl SystemRunner {
    /// Programs from `bin_dir` (else `PATH`), each limited to `timeout`.
    pub fn new(bin_dir: Option<PathBuf>, timeout: Duration) -> Self {
        Self { bin_dir, timeout }
    }

    fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(d) => d.join(name),
            None => Path::new(name).to_path_buf(),
        }
    }
}

fn read_all(mut r: impl io::Read) -> String {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

impl Runner for SystemRunner {
    fn run(&self, program: &str, args: &[String]) -> io::Result<CmdOutput> {
        let mut child = Command::new(self.program(program))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a time limit kills whatever the command started too
            // (a child holding the output pipe open would otherwise block the reader).
            .process_group(0)
            .spawn()?;
        let pid = child.id();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (fired_tx, fired_rx) = mpsc::channel::<()>();
        let timeout = self.timeout;
        let watchdog = std::thread::Builder::new()
            .name("slurm-cmd-watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
                    let _ = fired_tx.send(());
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg("--")
                        .arg(format!("-{pid}"))
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            });
        let stderr = child.stderr.take();
        let err_reader = std::thread::Builder::new()
            .name("slurm-cmd-stderr".into())
            .spawn(move || stderr.map(read_all).unwrap_or_default());
        let stdout = child.stdout.take().map(read_all).unwrap_or_default();
        let status = child.wait();
        let _ = done_tx.send(());
        if let Ok(w) = watchdog {
            let _ = w.join();
        }
        let stderr = match err_reader {
            Ok(h) => h.join().unwrap_or_default(),
            Err(_) => String::new(),
        };
        let status = status?;
        let timed_out = fired_rx.try_recv().is_ok();
        Ok(CmdOutput {
            code: if timed_out { None } else { status.code() },
            stdout,
            stderr,
            timed_out,
        })
    }
}
