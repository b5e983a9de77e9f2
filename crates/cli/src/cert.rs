//! `tidegate cert issue`: a zone's workload certificate issued offline, straight from the
//! certificate authority in a control plane's data directory, for a machine that cannot reach
//! the API with a token to ask for one (`tidegate agent --cert FILE --key FILE` presents it).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use miette::miette;

/// Workload certificates.
#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Issue a workload certificate for a zone (`spiffe://tidegate.local/zone/<zone>`) from the
    /// certificate authority in --data-dir. Writes `<out>/<zone>.pem` (the certificate and the
    /// authority's), `<out>/<zone>.key` (mode 0600) and `<out>/ca.pem`.
    Issue(IssueArgs),
    /// Issue a server certificate (for a witness's `--tls-cert`, or another service clients
    /// reach over HTTPS) from the certificate authority in --data-dir. Writes
    /// `<out>/server.pem`, `<out>/server.key` (mode 0600) and `<out>/ca.pem`.
    Server(ServerArgs),
}

/// Options of `tidegate cert server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// A name clients reach the service by: an IP address or DNS name (repeatable).
    #[arg(long = "name", required = true)]
    pub names: Vec<String>,
    /// Directory to write the certificate, its key and the authority's certificate to.
    #[arg(long)]
    pub out: PathBuf,
    /// The control plane's data directory (its certificate authority is in `pki/`).
    #[arg(long, default_value = ".tidegate")]
    pub data_dir: PathBuf,
    /// Lifetime in days (at most 825).
    #[arg(long, default_value_t = 90)]
    pub days: u64,
}

/// Options of `tidegate cert issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The zone the certificate proves.
    #[arg(long)]
    pub zone: String,
    /// Directory to write the certificate, its key and the authority's certificate to.
    #[arg(long)]
    pub out: PathBuf,
    /// The control plane's data directory (its certificate authority is in `pki/`).
    #[arg(long, default_value = ".tidegate")]
    pub data_dir: PathBuf,
    /// Lifetime in minutes (at most 1440).
    #[arg(long, default_value_t = 60)]
    pub ttl_minutes: u64,
}

fn authority(data_dir: &Path) -> miette::Result<tidegate_pki::Authority> {
    let pki = tidegate_vocab::DataDir::new(data_dir).pki();
    tidegate_pki::Authority::load(&pki, tidegate_pki::DEFAULT_TRUST_DOMAIN).map_err(|e| {
        miette!(
            help = "`tidegate up` creates it on its first start (without --plain-http)",
            "{e}"
        )
    })
}

fn server(a: &ServerArgs, now: u64) -> miette::Result<()> {
    if a.days == 0 || a.days > 825 {
        return Err(miette!("--days must be 1 to 825"));
    }
    let ca = authority(&a.data_dir)?;
    let issued = ca
        .issue_server(
            &a.names,
            tidegate_pki::Validity::starting(now, a.days * 24 * 3600),
        )
        .map_err(|e| miette!("{e}"))?;
    std::fs::create_dir_all(&a.out).map_err(|e| miette!("{}: {e}", a.out.display()))?;
    let cert = a.out.join("server.pem");
    let key = a.out.join("server.key");
    write_file(&key, &issued.key_pem, 0o600)?;
    write_file(&cert, &issued.issued.chain_pem, 0o644)?;
    write_file(&a.out.join("ca.pem"), ca.cert_pem(), 0o644)?;
    println!(
        "server certificate for {} valid until {} (unix seconds): {} and {}",
        a.names.join(", "),
        issued.issued.validity.not_after,
        cert.display(),
        key.display()
    );
    Ok(())
}

fn write_file(path: &Path, text: &str, mode: u32) -> miette::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    tidegate_pki::write_new(&tmp, text.as_bytes(), mode).map_err(|e| miette!("{e}"))?;
    std::fs::rename(&tmp, path).map_err(|e| miette!("{}: {e}", path.display()))
}

/// Runs a certificate command.
///
/// # Errors
/// No authority in the data directory, an invalid zone or lifetime, a directory not writable.
pub fn run(cmd: &CertCmd) -> miette::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let a = match cmd {
        CertCmd::Issue(a) => a,
        CertCmd::Server(s) => return server(s, now),
    };
    if a.ttl_minutes == 0 || a.ttl_minutes > 1440 {
        return Err(miette!("--ttl-minutes must be 1 to 1440"));
    }
    let ca = authority(&a.data_dir)?;
    let issued = ca
        .issue_workload(
            &a.zone,
            tidegate_pki::Validity::starting(now, a.ttl_minutes * 60),
        )
        .map_err(|e| miette!("{e}"))?;
    std::fs::create_dir_all(&a.out).map_err(|e| miette!("{}: {e}", a.out.display()))?;
    let cert = a.out.join(format!("{}.pem", a.zone));
    let key = a.out.join(format!("{}.key", a.zone));
    write_file(&key, &issued.key_pem, 0o600)?;
    write_file(&cert, &issued.issued.chain_pem, 0o644)?;
    write_file(&a.out.join("ca.pem"), ca.cert_pem(), 0o644)?;
    println!(
        "{} valid until {} (unix seconds): {} and {}",
        issued.issued.spiffe_id.unwrap_or_default(),
        issued.issued.validity.not_after,
        cert.display(),
        key.display()
    );
    Ok(())
}
