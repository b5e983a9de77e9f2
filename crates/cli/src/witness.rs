//! `tidegate witness`: run a witness for one or more evidence ledgers, speaking the C2SP
//! tlog-witness protocol over HTTPS (`--tls-cert`, `--tls-key`; plain HTTP only on loopback),
//! with its own key and state (never the control plane's).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use miette::{miette, IntoDiagnostic as _};
use tidegate_ledger::keys;
use tidegate_ledger::witness::Witness;

/// Arguments of `tidegate witness` (its help is on the command, in `main.rs`).
#[derive(Debug, clap::Args)]
pub struct WitnessArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7380")]
    pub listen: SocketAddr,
    /// The witness's private key file (created with mode 0600 if missing; its public key is
    /// written next to it as `.pub`: give that to auditors).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Where the witness keeps, per log, the newest checkpoint it co-signed (default: the key
    /// file with extension `.state`). Lose it and the witness would co-sign a cut history.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Public key file of a ledger this witness follows (repeatable): the control plane's
    /// `<data-dir>/keys/ledger.pub`.
    #[arg(long = "follow", value_name = "PUBKEY", required = true)]
    pub logs: Vec<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM; e.g. `tidegate cert server`). Without it
    /// the witness serves plain HTTP, and only on a loopback listen address.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Run the witness until interrupted.
///
/// # Errors
/// A key that cannot be read or created, a state file that does not parse, an address in use.
pub fn run(a: &WitnessArgs) -> miette::Result<()> {
    let key = keys::load_or_create_cosigner(&a.key, "tidegate-witness").into_diagnostic()?;
    let mut logs = BTreeMap::new();
    for path in &a.logs {
        let v = keys::load_verifier(path).into_diagnostic()?;
        logs.insert(v.name.clone(), v);
    }
    let state = a
        .state
        .clone()
        .unwrap_or_else(|| a.key.with_extension("state"));
    let public = key.verifier().to_text();
    let names: Vec<String> = logs.keys().cloned().collect();
    let witness = Witness { key, logs };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some((
            std::fs::read_to_string(c).map_err(|e| miette!("{}: {e}", c.display()))?,
            std::fs::read_to_string(k).map_err(|e| miette!("{}: {e}", k.display()))?,
        )),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    rt.block_on(async move {
        let tls = tls.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
        let server = tidegate_server::witness::start(a.listen, witness, &state, unix_now, tls)
            .await
            .map_err(|e| miette!("{e}"))?;
        // One write, so that a reader of the first line gets the others with it.
        print!(
            "witness listening on {}\nwitness key (give it to auditors): {public}\nfollowing: {}\n",
            server.url,
            names.join(", ")
        );
        let _ = std::io::Write::flush(&mut std::io::stdout());
        crate::up::wait_for_signal().await;
        server.shutdown().await;
        Ok(())
    })
}

fn unix_now() -> u64 {
    tidegate_vocab::Timestamp::now().unix_secs()
}
