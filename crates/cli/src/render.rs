//! `tidegate render`: what the fleet and its jobs look like to the systems that run them —
//! Kubernetes/Kueue manifests, sbatch scripts, nftables rulesets (see the `tidegate-render`
//! crate for every mapping).

use std::fs;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use miette::miette;
use tidegate_client::output::fleet_dir;
use tidegate_model::{load_fleet_with_scheduling, load_job, Fleet, JobSpec, Scheduling};
use tidegate_render::{k8s, k8s_name, load_addresses, nft, pick_zone, slurm, yaml, Addresses};

/// What to render for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Target {
    /// Kubernetes with Kueue: a job's Job, ServiceAccount and NetworkPolicy, or (without --job)
    /// the fleet's Namespaces, ResourceFlavors, ClusterQueues, LocalQueues and NetworkPolicies.
    #[default]
    K8s,
    /// Slurm: the sbatch script the Slurm executor submits for the job.
    Slurm,
    /// nftables: the zone's egress allowlist as a ruleset (needs --zone).
    Nftables,
}

/// Arguments of `tidegate render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Target system.
    #[arg(long, value_enum, default_value_t)]
    target: Target,
    /// Job manifest to render (k8s, slurm).
    #[arg(long)]
    job: Option<PathBuf>,
    /// Fleet directory (default: $TIDEGATE_FLEET, else ./examples/fleet).
    #[arg(long, env = "TIDEGATE_FLEET")]
    fleet: Option<PathBuf>,
    /// Zone to render for (default for a job: the first zone of the target's backend that its
    /// labels admit and that fits it).
    #[arg(long)]
    zone: Option<String>,
    /// Pool of the zone (default: the first of the job's preferred GPU types that fits).
    #[arg(long)]
    pool: Option<String>,
    /// Write the fleet's objects here, one file per object under a directory per zone, ready
    /// for Argo CD or Flux (k8s without --job).
    #[arg(long)]
    out: Option<PathBuf>,
    /// YAML file mapping zone names to CIDRs, for egress rules that name zones.
    #[arg(long)]
    addresses: Option<PathBuf>,
    /// Container image for the Kubernetes Job (default: tidegate-job:<code commit or latest>).
    #[arg(long)]
    image: Option<String>,
    /// tidegate job id to render with (default: the job's name).
    #[arg(long)]
    job_id: Option<String>,
    /// The Slurm executor's state dir (job directories, output) for --target slurm.
    #[arg(long, default_value = "/var/lib/tidegate/slurm")]
    state_dir: PathBuf,
}

fn load(a: &RenderArgs) -> miette::Result<(Fleet, Scheduling, Addresses)> {
    let dir = fleet_dir(a.fleet.clone())?;
    let (fleet, sched) =
        load_fleet_with_scheduling(&dir).map_err(|e| miette!("fleet does not load:\n{e}"))?;
    let addrs = match &a.addresses {
        Some(p) => load_addresses(p).map_err(|e| miette!("{e}"))?,
        None => Addresses::new(),
    };
    Ok((fleet, sched, addrs))
}

fn job(a: &RenderArgs, fleet: &Fleet) -> miette::Result<Option<(JobSpec, String)>> {
    let Some(path) = &a.job else { return Ok(None) };
    let spec = load_job(path, fleet).map_err(|e| miette!("job does not load:\n{e}"))?;
    let id = a.job_id.clone().unwrap_or_else(|| k8s_name(&spec.name));
    Ok(Some((spec, id)))
}

/// Runs `tidegate render`.
pub fn run(a: &RenderArgs) -> miette::Result<()> {
    let (fleet, sched, addrs) = load(a)?;
    match a.target {
        Target::Nftables => {
            let name = a.zone.as_deref().ok_or_else(|| {
                miette!(
                    help = "e.g. --zone public-eu",
                    "--target nftables needs --zone"
                )
            })?;
            let zone = fleet
                .zone(name)
                .ok_or_else(|| miette!("the fleet has no zone {name}"))?;
            let known: Vec<String> = fleet.zones.iter().map(|z| z.name.clone()).collect();
            print!("{}", nft::ruleset(zone, &known, &addrs));
            Ok(())
        }
        Target::Slurm => {
            let (spec, id) =
                job(a, &fleet)?.ok_or_else(|| miette!("--target slurm needs --job FILE"))?;
            let zone = pick_zone(&spec, &fleet.zones, "slurm", a.zone.as_deref())
                .map_err(|e| miette!("{e}"))?;
            let script = slurm::batch_script(
                &spec,
                &id,
                zone,
                a.pool.as_deref(),
                &a.state_dir.join(&zone.name),
            )
            .map_err(|e| miette!("{e}"))?;
            print!("{script}");
            Ok(())
        }
        Target::K8s => match job(a, &fleet)? {
            Some((spec, id)) => {
                if a.out.is_some() {
                    return Err(miette!("--out writes the fleet's objects; leave out --job, or print the job's objects without --out"));
                }
                let zone = pick_zone(&spec, &fleet.zones, "kubernetes", a.zone.as_deref())
                    .map_err(|e| miette!("{e}"))?;
                let image = a.image.clone().unwrap_or_else(|| {
                    format!(
                        "tidegate-job:{}",
                        spec.code_commit.as_deref().unwrap_or("latest")
                    )
                });
                let objs = k8s::job_objects(
                    k8s::Context {
                        fleet: &fleet,
                        sched: &sched,
                        addrs: &addrs,
                    },
                    &spec,
                    &id,
                    zone,
                    a.pool.as_deref(),
                    &image,
                )
                .map_err(|e| miette!("{e}"))?;
                print!("{}", yaml::to_yaml_stream(&objs));
                Ok(())
            }
            None => {
                let objs = k8s::fleet_objects(&fleet, &sched, &addrs);
                match &a.out {
                    Some(out) => {
                        for o in &objs {
                            let path = out.join(&o.path);
                            if let Some(parent) = path.parent() {
                                fs::create_dir_all(parent).map_err(|e| {
                                    miette!("cannot create {}: {e}", parent.display())
                                })?;
                            }
                            fs::write(&path, yaml::to_yaml(&o.value))
                                .map_err(|e| miette!("cannot write {}: {e}", path.display()))?;
                        }
                        eprintln!("wrote {} objects under {}", objs.len(), out.display());
                    }
                    None => {
                        let values: Vec<_> = objs.into_iter().map(|o| o.value).collect();
                        print!("{}", yaml::to_yaml_stream(&values));
                    }
                }
                Ok(())
            }
        },
    }
}
