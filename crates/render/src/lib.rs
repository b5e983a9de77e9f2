//! tidegate rendering: what a fleet and its jobs look like to the systems that run them.
//!
//! - [`k8s`]: a job as a Kubernetes `batch/v1` Job queued through Kueue (with its ServiceAccount
//!   and the zone's egress NetworkPolicy), and the whole fleet's cluster objects (Namespaces,
//!   Kueue ResourceFlavors, ClusterQueues, LocalQueues, NetworkPolicies) as one file per object
//!   for Argo CD or Flux;
//! - [`slurm`]: a job as the sbatch script the Slurm executor submits (the executor takes
//!   [`slurm::script`] as its renderer);
//! - [`nft`]: a zone's egress allowlist as an nftables ruleset;
//! - [`yaml`]: the deterministic YAML emitter they use.
//!
//! Rendering is pure: the same fleet, job and options always give byte-identical output (objects
//! and files in a stable order), so the output can be committed and diffed. Manifests are built
//! as JSON values in the shapes of the Kubernetes and Kueue (v1beta1) APIs; the `k8s-openapi`
//! types were left out for their build cost (the tests parse the output back and check the
//! fields that matter, and golden files pin the rest).
//!
//! Zone addresses: a fleet names egress destinations by zone name or host. Where a destination
//! is a zone, its addresses come from an [`Addresses`] map (zone → CIDRs) when one is given; a
//! zone without addresses renders to a documented placeholder (an empty nftables set to fill, a
//! NetworkPolicy annotation listing it), which blocks until filled — never an open rule.

#![warn(missing_docs, unreachable_pub)]

pub mod k8s;
pub mod nft;
pub mod slurm;
pub mod yaml;

use std::collections::BTreeMap;
use std::net::IpAddr;

use thiserror::Error;
use tidegate_exec::Launch;
use tidegate_model::{Fleet, JobProfile, JobSpec, Pool, Zone};

/// Addresses of zones (zone name → CIDRs or IP addresses), for egress rules naming zones.
pub type Addresses = BTreeMap<String, Vec<String>>;

/// Why something could not be rendered.
#[derive(Debug, Error)]
pub enum RenderError {
    /// No zone fits the job (or the named zone does not exist / has the wrong backend).
    #[error("no zone for job {job}: {reason}")]
    NoZone {
        /// Job name.
        job: String,
        /// Why.
        reason: String,
    },
    /// The addresses file could not be read or parsed.
    #[error("addresses file {path}: {reason}")]
    Addresses {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The executor's script generation refused the launch.
    #[error(transparent)]
    Exec(#[from] tidegate_exec::ExecError),
    /// The job does not resolve against the fleet (an input the fleet does not know), so its
    /// effective labels are unknown.
    #[error(transparent)]
    Resolve(#[from] tidegate_model::ResolveError),
    /// A launch without one of the effective job labels: a Job is never rendered without them,
    /// since the cluster's admission controllers enforce them.
    #[error("launch {job} carries no effective `{label}` label (every launch must carry data_classification, allowed_execution_zone and burst_eligible)")]
    MissingLabel {
        /// The launch's job id.
        job: String,
        /// The missing label.
        label: &'static str,
    },
}

/// Reads an addresses file: YAML mapping zone names to lists of CIDRs or IP addresses, e.g.
/// `hospital-onprem: [10.20.0.0/16]`.
pub fn load_addresses(path: &std::path::Path) -> Result<Addresses, RenderError> {
    let err = |reason: String| RenderError::Addresses {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let map: Addresses = serde_saphyr::from_str(&text).map_err(|e| err(e.to_string()))?;
    for (zone, list) in &map {
        if let Some(bad) = list.iter().find(|a| matches!(parse_dest(a), Dest::Name(_))) {
            return Err(err(format!("{zone}: {bad:?} is not an IP address or CIDR")));
        }
    }
    Ok(map)
}

/// A parsed egress destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// An IPv4 network (`a.b.c.d/len`).
    V4(String),
    /// An IPv6 network.
    V6(String),
    /// A zone name or host name.
    Name(String),
}

/// Classifies an allowlist entry: an IP address or CIDR (normalised to `addr/len`), else a name.
pub fn parse_dest(s: &str) -> Dest {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) if len.is_none_or(|l| l.parse::<u8>().is_ok_and(|n| n <= 32)) => {
            Dest::V4(format!("{a}/{}", len.unwrap_or("32")))
        }
        Ok(IpAddr::V6(a)) if len.is_none_or(|l| l.parse::<u8>().is_ok_and(|n| n <= 128)) => {
            Dest::V6(format!("{a}/{}", len.unwrap_or("128")))
        }
        _ => Dest::Name(s.to_owned()),
    }
}

/// A name reduced to a Kubernetes object name (DNS-1123 label: lower case, digits, `-`).
pub fn k8s_name(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out = out.trim_matches('-').to_owned();
    out.truncate(63);
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        "x".into()
    } else {
        out
    }
}

/// The time limit the control plane gives a job: twice its expected run time, at least a
/// minute (as the server computes it).
pub fn time_limit_s(job: &JobSpec) -> u64 {
    let s = (job.resources.expected_hours * 3600.0 * 2.0)
        .ceil()
        .max(60.0);
    if s.is_finite() && s < 1.0e12 {
        s as u64
    } else {
        60
    }
}

/// The pool of `zone` a job would use: the named one, else the first pool of the job's most
/// preferred GPU type with enough GPUs.
pub fn pick_pool<'z>(
    job: &JobSpec,
    zone: &'z Zone,
    pool: Option<&str>,
) -> Result<&'z Pool, RenderError> {
    let fits =
        |p: &Pool| p.gpus >= job.resources.gpus && p.gpu_memory_gb >= job.resources.gpu_memory_gb;
    let no = |reason: String| RenderError::NoZone {
        job: job.name.clone(),
        reason,
    };
    if let Some(name) = pool {
        let p = zone
            .pools
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| no(format!("zone {} has no pool {name}", zone.name)))?;
        return if fits(p) {
            Ok(p)
        } else {
            Err(no(format!("pool {}/{name} is too small", zone.name)))
        };
    }
    let types = &job.resources.gpu_types;
    if types.is_empty() {
        return zone
            .pools
            .iter()
            .find(|p| fits(p))
            .ok_or_else(|| no(format!("no pool of zone {} fits", zone.name)));
    }
    types
        .iter()
        .find_map(|t| {
            zone.pools
                .iter()
                .find(|p| p.gpu_type.eq_ignore_ascii_case(t) && fits(p))
        })
        .ok_or_else(|| {
            no(format!(
                "no pool of zone {} has {} x {}",
                zone.name,
                job.resources.gpus,
                types.join("|")
            ))
        })
}

/// The zone a job renders for: the named one, else the first zone (fleet order) with the wanted
/// backend kind that the job's `allowed_execution_zone` label admits, whose classification limit
/// covers the job's label, and with a pool that fits. (Placement policy proper is
/// `tidegate explain`; this only picks a plausible target.)
pub fn pick_zone<'f>(
    job: &JobSpec,
    zones: &'f [Zone],
    kind: &str,
    name: Option<&str>,
) -> Result<&'f Zone, RenderError> {
    let no = |reason: String| RenderError::NoZone {
        job: job.name.clone(),
        reason,
    };
    if let Some(n) = name {
        let z = zones
            .iter()
            .find(|z| z.name == n)
            .ok_or_else(|| no(format!("the fleet has no zone {n}")))?;
        if z.backend.kind() != kind {
            return Err(no(format!(
                "zone {n} runs on {}, not {kind}",
                z.backend.kind()
            )));
        }
        return Ok(z);
    }
    zones
        .iter()
        .filter(|z| z.backend.kind() == kind)
        .filter(|z| {
            job.labels
                .allowed_execution_zone
                .as_ref()
                .is_none_or(|s| s.admits(z))
        })
        .filter(|z| {
            job.labels
                .data_classification
                .is_none_or(|c| c <= z.max_classification)
        })
        .find(|z| pick_pool(job, z, None).is_ok())
        .ok_or_else(|| {
            no(format!(
                "no {kind} zone admits the job's labels and fits it; name one with --zone"
            ))
        })
}

/// The customer's job labels with their effective values for `job` (as the control plane puts
/// them on every launch): [`tidegate_model::JobProfile::effective_labels`].
pub fn effective_labels(
    job: &JobSpec,
    fleet: &Fleet,
) -> Result<BTreeMap<String, String>, RenderError> {
    Ok(JobProfile::resolve(job, fleet)?.effective_labels(&fleet.scheme))
}

/// The launch the control plane would hand an executor for `job` in `zone`/`pool`, without its
/// effective labels (see [`effective_labels`]; the Kubernetes renderer adds them).
pub fn launch_for(job: &JobSpec, job_id: &str, zone: &Zone, pool: &Pool) -> Launch {
    Launch {
        job_id: job_id.to_owned(),
        name: job.name.clone(),
        team: job.team.clone(),
        zone: zone.name.clone(),
        pool: pool.name.clone(),
        gpus: job.resources.gpus,
        gpu_type: pool.gpu_type.clone(),
        command: job.command.clone(),
        stand_in_seconds: 0.0,
        time_limit_s: time_limit_s(job),
        env: Vec::new(),
        labels: Default::default(),
    }
}
