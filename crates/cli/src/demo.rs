//! `tidegate demo burst`: submits a realistic job mix to a running control plane on the example
//! fleet and narrates what happens — private pools fill, queues build, burst-eligible work on
//! de-identified data spills to public GPUs with its justification, raw PHI work waits in
//! private, and a job no allowed pool can hold is refused.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use miette::miette;
use tidegate_api::{JobDetail, JobList, JobView, SubmitRequest, SubmitResponse};
use tidegate_client::{Client, ClientArgs};

/// Demonstrations against a running control plane (`tidegate up`).
#[derive(Debug, Subcommand)]
pub enum DemoCmd {
    /// Queueing, bursting and refusals on the example fleet, within a minute.
    Burst(BurstArgs),
    /// The cloud-burst training pattern end to end, self-contained (starts its own control
    /// plane): raw PHI registered → sanitized (earned deidentified) → feature projection
    /// transferred → sweep bursts to public GPUs and trains → models signed and synced back →
    /// public copies shredded → lineage and an offline-verified evidence bundle. The same sweep on
    /// raw data stays private, with the reason.
    BurstTraining(crate::demo_training::BurstTrainingArgs),
}

/// Options of `demo burst`.
#[derive(Debug, Args)]
pub struct BurstArgs {
    /// Hyperparameter-sweep jobs on de-identified data (8 GPUs each, burst-eligible).
    #[arg(long, default_value_t = 36)]
    pub sweeps: usize,
    /// Sweep jobs on raw PHI (labelled burst-eligible, but the data keeps them private).
    #[arg(long, default_value_t = 6)]
    pub raw: usize,
    /// Seconds each job's process runs.
    #[arg(long, default_value_t = 20)]
    pub run_seconds: u32,
    /// Seconds to watch before printing the summary.
    #[arg(long, default_value_t = 30)]
    pub watch: u64,
    /// Server and token.
    #[command(flatten)]
    pub client: ClientArgs,
}

fn sweep(i: usize, secs: u32) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: sepsis-sweep-{i:02}
  team: icu-ml
  labels:
    burst_eligible: true
spec:
  kind: hpo-sweep
  inputs:
    - dataset: ehr-deid@2026-10
  outputs: [sweeps/sepsis/]
  resources:
    gpus: 8
    gpu_types: [H100, H200]
    expected_hours: 6
  sla: {{max_wait_minutes: 30}}
  budget_class: research
  hyperparameters: {{trial_block: {i}}}
  justification: model selection before the December release; private queue is full
  command: [sh, -c, 'echo \"sweep block {i} on $TIDEGATE_GPUS x $TIDEGATE_GPU_TYPE in $TIDEGATE_ZONE\"; sleep {secs}; echo \"best auc 0.8{i:02}\"']
"
    )
}

fn raw(i: usize, secs: u32) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: sepsis-raw-{i:02}
  team: icu-ml
  labels:
    burst_eligible: true
spec:
  kind: hpo-sweep
  inputs:
    - dataset: ehr-raw@2026-10
  resources:
    gpus: 8
    gpu_types: [H100, H200]
    expected_hours: 6
  budget_class: research
  justification: faster model selection
  command: [sh, -c, 'echo \"raw-data sweep {i} in $TIDEGATE_ZONE\"; sleep {secs}']
"
    )
}

const GIANT: &str = "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: foundation-pretrain
  team: research-it
  labels:
    burst_eligible: true
spec:
  kind: train
  inputs:
    - dataset: pubmed-abstracts@2026-06
  resources:
    gpus: 1024
    gpu_types: [H100]
    expected_hours: 300
  budget_class: research
  justification: foundation model pre-training
";

/// Runs a demo.
pub fn run(cmd: &DemoCmd) -> miette::Result<()> {
    match cmd {
        DemoCmd::Burst(a) => burst(a),
        DemoCmd::BurstTraining(a) => crate::demo_training::run(a),
    }
}

fn burst(a: &BurstArgs) -> miette::Result<()> {
    let client = Client::from_args(&a.client)?;
    let run = format!("demo-{}", std::process::id());
    let mut manifests: Vec<(String, String)> = Vec::new();
    for i in 0..a.sweeps {
        manifests.push((format!("sweep-{i}"), sweep(i, a.run_seconds)));
        // Interleave the raw-data jobs so they meet a busy private side.
        if i % 6 == 5 && i / 6 < a.raw {
            manifests.push((format!("raw-{}", i / 6), raw(i / 6, a.run_seconds)));
        }
    }
    for i in (a.sweeps / 6).min(a.raw)..a.raw {
        manifests.push((format!("raw-{i}"), raw(i, a.run_seconds)));
    }
    manifests.push(("giant".into(), GIANT.into()));
    println!("submitting {} jobs to {} ...", manifests.len(), client.base);
    let mut ids = Vec::new();
    for (key, m) in &manifests {
        let idem = format!("{run}-{key}");
        let r: SubmitResponse = client.post(
            "/v1/jobs",
            &SubmitRequest {
                manifest: m.clone(),
            },
            &[("Idempotency-Key", idem.as_str())],
        )?;
        ids.push(r.job.id);
    }
    let started = Instant::now();
    let mut last = String::new();
    let mut snapshot: Vec<JobView> = Vec::new();
    while started.elapsed() < Duration::from_secs(a.watch) {
        std::thread::sleep(Duration::from_secs(1));
        snapshot = mine(&client, &ids)?;
        let line = summary(&snapshot);
        if line != last {
            println!("[{:>3}s] {line}", started.elapsed().as_secs());
            last = line;
        }
    }
    if snapshot.is_empty() {
        snapshot = mine(&client, &ids)?;
    }
    println!();
    narrate(&client, &snapshot)
}

/// The demo's jobs as the server sees them now.
fn mine(client: &Client, ids: &[String]) -> miette::Result<Vec<JobView>> {
    let mut out = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let q = after.map_or_else(
            || "/v1/jobs?limit=1000".to_string(),
            |n| format!("/v1/jobs?limit=1000&after={n}"),
        );
        let page: JobList = client.get(&q)?;
        out.extend(page.jobs.into_iter().filter(|j| ids.contains(&j.id)));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    Ok(out)
}

fn summary(jobs: &[JobView]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for j in jobs {
        let key = match (&j.state[..], &j.zone) {
            ("running" | "admitted" | "succeeded", Some(z)) => format!("{} in {z}", j.state),
            (s, _) => s.to_owned(),
        };
        *by.entry(key).or_default() += 1;
    }
    by.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn narrate(client: &Client, jobs: &[JobView]) -> miette::Result<()> {
    let public = |j: &&JobView| {
        j.zone.as_deref().is_some_and(|z| z.starts_with("public")) && j.pool.is_some()
    };
    let burst = jobs.iter().find(public);
    let refused = jobs.iter().find(|j| {
        j.state == "failed"
            && j.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("refused"))
    });
    let raw_waiting = jobs.iter().find(|j| j.name.starts_with("sepsis-raw"));
    let queued = jobs.iter().filter(|j| j.state == "queued").count();
    println!("what happened:");
    println!("  queueing: {queued} jobs are waiting for private capacity right now");
    match burst {
        Some(j) => {
            let d: JobDetail = client.get(&format!("/v1/jobs/{}", j.id))?;
            let admitted = d
                .events
                .iter()
                .find(|e| e.to_state.as_deref() == Some("admitted"));
            println!(
                "  burst:    {} ran in {}/{}",
                j.name,
                j.zone.as_deref().unwrap_or("?"),
                j.pool.as_deref().unwrap_or("?")
            );
            if let Some(e) = admitted {
                println!("            why: {}", e.reason.as_deref().unwrap_or("?"));
                if let Some(just) = e.details.get("justification").and_then(|v| v.as_str()) {
                    println!("            justification recorded: {just}");
                }
            }
            println!("            see: tidegate job {}", j.id);
        }
        None => println!(
            "  burst:    none yet (the private side still had room; submit more with --sweeps)"
        ),
    }
    if let Some(j) = raw_waiting {
        let d: JobDetail = client.get(&format!("/v1/jobs/{}", j.id))?;
        let why_not = d.events.iter().find_map(|e| {
            e.details
                .get("refused_zones")
                .and_then(|r| r.get("public-eu"))
                .and_then(|v| v.as_array())
                .and_then(|a| a.first())
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        });
        println!(
            "  private:  {} is {} in {} — never public: {}",
            j.name,
            j.state,
            j.zone.as_deref().unwrap_or("?"),
            why_not.unwrap_or_else(|| "its data is private-only".into())
        );
    }
    match refused {
        Some(j) => println!(
            "  refused:  {} — {}",
            j.name,
            j.reason.as_deref().unwrap_or("?")
        ),
        None => {
            return Err(miette!(
            "the oversized job was not refused; is the control plane running the example fleet?"
        ))
        }
    }
    println!("\nwatch it continue: tidegate jobs --team icu-ml   |   metrics: curl -H \"Authorization: Bearer $(cat .tidegate/admin.token)\" {}/metrics", client.base);
    Ok(())
}
