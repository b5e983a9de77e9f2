//! Kubernetes and Kueue objects for a fleet's Kubernetes zones and for single jobs.
//!
//! One zone is one cluster (its kubeconfig context), so [`fleet_objects`] groups files by zone:
//! `<zone>/<NN>-<kind>-<name>.yaml`, the prefix giving apply order (namespaces, flavors, cluster
//! queues, local queues, network policies), each object also carrying an Argo CD sync wave.
//!
//! Kueue model (API `kueue.x-k8s.io/v1beta1`):
//! - one ResourceFlavor per GPU type in the zone, `gpu-<type>`, selecting nodes labelled
//!   `tidegate.io/gpu-type=<type>`;
//! - one ClusterQueue per zone (named after the zone, cohort = the zone) holding the zone's GPUs
//!   (`nvidia.com/gpu`, nominal quota per flavor = the sum of its pools) that no team quota
//!   claims, and one ClusterQueue per team whose quota covers the zone (`<zone>-<team>`, same
//!   cohort): the team's nominal GPUs for the zone's scope, given in declaration order until the
//!   zone is full and spread over flavors in pool order, its borrowing limit, and its fair-share
//!   weight. Kueue has no money budgets: a team's budget is recorded as annotations
//!   (`tidegate.io/budget-money`, `tidegate.io/budget-gpu-hours`) for tidegate's own accounting;
//! - LocalQueues in the zone's namespace: the backend's queue (→ the zone's ClusterQueue) and
//!   one per team with a quota there (→ the team's ClusterQueue). A job is labelled with its
//!   team's LocalQueue when there is one, else the zone's.
//!
//! Quotas cover `nvidia.com/gpu` only; jobs also request host memory, so the Kueue installation
//! should exclude `memory` and `cpu` from quota accounting (`resources.excludeResourcePrefixes`
//! in Kueue's Configuration), or the ClusterQueues must be extended to cover them.
//!
//! A job renders as a `batch/v1` Job created suspended (Kueue admits it by unsuspending), with
//! the customer's labels at their effective values (`data_classification` = the effective level,
//! `allowed_execution_zone`, `burst_eligible`: always all three, from the launch, even where the
//! spec wrote none, so that admission controllers in the cluster can enforce them; a launch
//! without them is not rendered) and tidegate's (`tidegate.io/job-id`) on the Job and its pods, node affinity for the pool's GPU type and pool,
//! tolerations for GPU (and spot) taints, `nvidia.com/gpu` limits, no automounted API token, and
//! a short-lived projected ServiceAccount token (audience `tidegate`, 600 s, Kubernetes' minimum;
//! the kubelet rotates it) from a per-job ServiceAccount.
//!
//! The zone's NetworkPolicy (`tidegate-egress`) selects every pod in the namespace and allows
//! egress only to DNS (kube-dns in kube-system, UDP/TCP 53) and to the allowlist's addresses:
//! CIDRs as given, zone names through the [`Addresses`] map. Destinations that cannot be
//! expressed as IP blocks (zones without addresses, host names) are listed in the annotation
//! `tidegate.io/unresolved-egress` and stay blocked.

use serde_json::{json, Map, Value};
use tidegate_exec::Launch;
use tidegate_model::{
    Backend, Fleet, JobSpec, Pool, Pricing, Scheduling, TeamQuota, Zone, RESERVED_LABELS,
};

use crate::{
    effective_labels, k8s_name, launch_for, parse_dest, pick_pool, Addresses, Dest, RenderError,
};

const KUEUE: &str = "kueue.x-k8s.io/v1beta1";
const GPU: &str = "nvidia.com/gpu";
const MANAGED: (&str, &str) = ("app.kubernetes.io/managed-by", "tidegate");

/// Nominal GPUs per flavor, in pool order.
type FlavorQuota = Vec<(String, u32)>;

/// What every job render reads besides the job: the fleet, its scheduling rules, zone addresses.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The fleet.
    pub fleet: &'a Fleet,
    /// Its scheduling rules (team quotas pick a job's LocalQueue).
    pub sched: &'a Scheduling,
    /// Zone addresses for egress rules.
    pub addrs: &'a Addresses,
}

/// One rendered object and the file it goes to (relative to the output directory).
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Relative path, e.g. `public-eu/20-clusterqueue-public-eu.yaml`.
    pub path: String,
    /// The object.
    pub value: Value,
}

fn flavor_name(gpu_type: &str) -> String {
    format!("gpu-{}", k8s_name(gpu_type))
}

fn namespace_and_queue(zone: &Zone) -> Option<(&str, &str)> {
    match &zone.backend {
        Backend::Kubernetes {
            namespace, queue, ..
        } => Some((namespace, queue)),
        _ => None,
    }
}

fn meta(name: &str, namespace: Option<&str>, zone: &Zone, wave: i32) -> Value {
    let mut m = json!({
        "name": name,
        "labels": { MANAGED.0: MANAGED.1, "tidegate.io/zone": zone.name },
        "annotations": { "argocd.argoproj.io/sync-wave": wave.to_string() },
    });
    if let (Some(ns), Some(o)) = (namespace, m.as_object_mut()) {
        o.insert("namespace".into(), json!(ns));
    }
    m
}

/// GPU types of a zone in pool order, each with its total GPUs.
fn flavors(zone: &Zone) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for p in &zone.pools {
        let f = flavor_name(&p.gpu_type);
        match out.iter_mut().find(|(n, _)| *n == f) {
            Some((_, g)) => *g += p.gpus,
            None => out.push((f, p.gpus)),
        }
    }
    out
}

/// Teams whose quota covers the zone, with their nominal GPUs per flavor (declaration order,
/// clipped to what the zone has left).
fn team_quotas<'s>(
    zone: &Zone,
    sched: &'s Scheduling,
) -> (Vec<(&'s TeamQuota, FlavorQuota)>, FlavorQuota) {
    let mut left = flavors(zone);
    let mut teams = Vec::new();
    for t in &sched.teams {
        let Some(scope) = t.scope_for(zone) else {
            continue;
        };
        let mut want = t.nominal.get(scope).copied().unwrap_or(0);
        let mut per = Vec::new();
        for (f, free) in left.iter_mut() {
            let take = want.min(*free);
            *free -= take;
            want -= take;
            per.push((f.clone(), take));
        }
        teams.push((t, per));
    }
    (teams, left)
}

fn resource_groups(per_flavor: &[(String, u32)], borrowing: Option<u32>) -> Value {
    let flavors: Vec<Value> = per_flavor
        .iter()
        .map(|(f, n)| {
            let mut r = json!({ "name": GPU, "nominalQuota": n });
            if let (Some(b), Some(o)) = (borrowing, r.as_object_mut()) {
                o.insert("borrowingLimit".into(), json!(b));
            }
            json!({ "name": f, "resources": [r] })
        })
        .collect();
    json!([{ "coveredResources": [GPU], "flavors": flavors }])
}

fn team_queue_name(team: &str) -> String {
    k8s_name(team)
}

/// The LocalQueue a job of `team` uses in `zone`.
pub fn local_queue(zone: &Zone, sched: &Scheduling, team: &str) -> Option<String> {
    let (_, queue) = namespace_and_queue(zone)?;
    Some(match sched.team(team) {
        Some(t) if t.scope_for(zone).is_some() => team_queue_name(team),
        _ => k8s_name(queue),
    })
}

/// The zone's egress NetworkPolicy.
pub fn network_policy(zone: &Zone, known_zones: &[String], addrs: &Addresses) -> Option<Value> {
    let (ns, _) = namespace_and_queue(zone)?;
    let mut to: Vec<Value> = Vec::new();
    let mut unresolved: Vec<String> = Vec::new();
    let mut block = |net: String| {
        to.push(json!({ "ipBlock": { "cidr": net } }));
    };
    for d in &zone.egress_allowlist {
        if d == "*" {
            block("0.0.0.0/0".into());
            block("::/0".into());
            continue;
        }
        match parse_dest(d) {
            Dest::V4(n) | Dest::V6(n) => block(n),
            Dest::Name(name) => {
                let nets: Vec<String> = if known_zones.contains(&name) {
                    addrs
                        .get(&name)
                        .into_iter()
                        .flatten()
                        .filter_map(|a| match parse_dest(a) {
                            Dest::V4(n) | Dest::V6(n) => Some(n),
                            Dest::Name(_) => None,
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                if nets.is_empty() {
                    unresolved.push(name);
                }
                for n in nets {
                    block(n);
                }
            }
        }
    }
    let mut egress = vec![json!({
        "to": [{
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } },
            "podSelector": { "matchLabels": { "k8s-app": "kube-dns" } },
        }],
        "ports": [{ "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 }],
    })];
    if !to.is_empty() {
        egress.push(json!({ "to": to }));
    }
    let mut m = meta("tidegate-egress", Some(ns), zone, 4);
    if !unresolved.is_empty() {
        if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
            a.insert(
                "tidegate.io/unresolved-egress".into(),
                json!(unresolved.join(",")),
            );
        }
    }
    Some(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": m,
        "spec": { "podSelector": {}, "policyTypes": ["Egress"], "egress": egress },
    }))
}

/// Every cluster object of the fleet's Kubernetes zones, one per file, in a stable order.
pub fn fleet_objects(fleet: &Fleet, sched: &Scheduling, addrs: &Addresses) -> Vec<Object> {
    let known: Vec<String> = fleet.zones.iter().map(|z| z.name.clone()).collect();
    let mut out = Vec::new();
    let mut zones: Vec<&Zone> = fleet
        .zones
        .iter()
        .filter(|z| namespace_and_queue(z).is_some())
        .collect();
    zones.sort_by(|a, b| a.name.cmp(&b.name));
    for zone in zones {
        let Some((ns, queue)) = namespace_and_queue(zone) else {
            continue;
        };
        let dir = k8s_name(&zone.name);
        let mut push = |prefix: &str, kind: &str, name: &str, value: Value| {
            out.push(Object {
                path: format!("{dir}/{prefix}-{}-{name}.yaml", kind.to_ascii_lowercase()),
                value,
            });
        };
        push(
            "00",
            "Namespace",
            ns,
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": meta(ns, None, zone, 0) }),
        );
        let mut types: Vec<&Pool> = Vec::new();
        for p in &zone.pools {
            if !types
                .iter()
                .any(|t| t.gpu_type.eq_ignore_ascii_case(&p.gpu_type))
            {
                types.push(p);
            }
        }
        for p in types {
            let f = flavor_name(&p.gpu_type);
            push(
                "10",
                "ResourceFlavor",
                &f,
                json!({
                    "apiVersion": KUEUE,
                    "kind": "ResourceFlavor",
                    "metadata": meta(&f, None, zone, 1),
                    "spec": {
                        "nodeLabels": { "tidegate.io/gpu-type": k8s_name(&p.gpu_type) },
                        "tolerations": [{ "key": GPU, "operator": "Exists", "effect": "NoSchedule" }],
                    },
                }),
            );
        }
        let (teams, left) = team_quotas(zone, sched);
        let selector = json!({ "matchLabels": { "kubernetes.io/metadata.name": ns } });
        let zone_cq = k8s_name(&zone.name);
        push(
            "20",
            "ClusterQueue",
            &zone_cq,
            json!({
                "apiVersion": KUEUE,
                "kind": "ClusterQueue",
                "metadata": meta(&zone_cq, None, zone, 2),
                "spec": {
                    "cohort": zone_cq,
                    "namespaceSelector": selector,
                    "queueingStrategy": "BestEffortFIFO",
                    "preemption": { "reclaimWithinCohort": "Any", "withinClusterQueue": "LowerPriority" },
                    "resourceGroups": resource_groups(&left, None),
                },
            }),
        );
        for (t, per) in &teams {
            let name = format!("{zone_cq}-{}", k8s_name(&t.name));
            let mut m = meta(&name, None, zone, 2);
            if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
                a.insert("tidegate.io/team".into(), json!(t.name));
                if let Some(x) = t.budget.money {
                    a.insert("tidegate.io/budget-money".into(), json!(x.to_string()));
                }
                if let Some(x) = t.budget.gpu_hours {
                    a.insert("tidegate.io/budget-gpu-hours".into(), json!(x.to_string()));
                }
            }
            push(
                "20",
                "ClusterQueue",
                &name,
                json!({
                    "apiVersion": KUEUE,
                    "kind": "ClusterQueue",
                    "metadata": m,
                    "spec": {
                        "cohort": zone_cq,
                        "namespaceSelector": selector,
                        "queueingStrategy": "BestEffortFIFO",
                        "fairSharing": { "weight": t.weight.to_string() },
                        "preemption": { "reclaimWithinCohort": "Any", "borrowWithinCohort": { "policy": "LowerPriority" }, "withinClusterQueue": "LowerPriority" },
                        "resourceGroups": resource_groups(per, t.borrowing_limit),
                    },
                }),
            );
        }
        let q = k8s_name(queue);
        push(
            "30",
            "LocalQueue",
            &q,
            json!({
                "apiVersion": KUEUE,
                "kind": "LocalQueue",
                "metadata": meta(&q, Some(ns), zone, 3),
                "spec": { "clusterQueue": zone_cq },
            }),
        );
        for (t, _) in &teams {
            let q = team_queue_name(&t.name);
            push(
                "30",
                "LocalQueue",
                &q,
                json!({
                    "apiVersion": KUEUE,
                    "kind": "LocalQueue",
                    "metadata": meta(&q, Some(ns), zone, 3),
                    "spec": { "clusterQueue": format!("{zone_cq}-{}", k8s_name(&t.name)) },
                }),
            );
        }
        if let Some(np) = network_policy(zone, &known, addrs) {
            push("40", "NetworkPolicy", "tidegate-egress", np);
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// A job for a Kubernetes zone: its ServiceAccount, the Job, and the zone's NetworkPolicy.
pub fn job_objects(
    cx: Context<'_>,
    job: &JobSpec,
    job_id: &str,
    zone: &Zone,
    pool: Option<&str>,
    image: &str,
) -> Result<Vec<Value>, RenderError> {
    let Context {
        fleet,
        sched,
        addrs,
    } = cx;
    let Some((ns, _)) = namespace_and_queue(zone) else {
        return Err(RenderError::NoZone {
            job: job.name.clone(),
            reason: format!(
                "zone {} runs on {}, not kubernetes",
                zone.name,
                zone.backend.kind()
            ),
        });
    };
    let pool = pick_pool(job, zone, pool)?;
    let mut launch = launch_for(job, job_id, zone, pool);
    launch.labels = effective_labels(job, fleet)?;
    let mut annotations = Map::new();
    if let Some(c) = &job.code_commit {
        annotations.insert("tidegate.io/code-commit".into(), json!(c));
    }
    if let Some(j) = &job.justification {
        annotations.insert("tidegate.io/justification".into(), json!(j));
    }
    let spec = JobShape {
        labels: Map::new(),
        annotations,
        memory_gb: job.resources.memory_gb,
        stand_in: false,
    };
    let job_obj = launch_job(zone, sched, &launch, image, spec)?;
    let pod_labels = job_obj["spec"]["template"]["metadata"]["labels"].clone();
    let service_account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": { "name": service_account_name(job_id), "namespace": ns, "labels": pod_labels },
        "automountServiceAccountToken": false,
    });
    let known: Vec<String> = fleet.zones.iter().map(|z| z.name.clone()).collect();
    let mut objs = vec![service_account, job_obj];
    if let Some(np) = network_policy(zone, &known, addrs) {
        objs.push(np);
    }
    Ok(objs)
}

/// What a Job carries beyond its launch: pod labels (tidegate's job labels), annotations, host
/// memory.
#[derive(Debug, Clone, Default)]
pub struct JobShape {
    /// Labels on the Job and its pods.
    pub labels: Map<String, Value>,
    /// Annotations on the Job.
    pub annotations: Map<String, Value>,
    /// Host memory, GiB (0: no memory request).
    pub memory_gb: u32,
    /// Without a command, run the executors' stand-in (`sh -c 'sleep ...'`) instead of the
    /// image's own entrypoint.
    pub stand_in: bool,
}

fn service_account_name(job_id: &str) -> String {
    let mut n = format!("tidegate-job-{}", k8s_name(job_id));
    n.truncate(63);
    n.trim_end_matches('-').to_owned()
}

/// The `batch/v1` Job for a launch in a Kubernetes zone — what `tidegate render` prints for a job
/// and what the Kubernetes executor's renderer hands it (see [`launch_renderer`]).
pub fn launch_job(
    zone: &Zone,
    sched: &Scheduling,
    launch: &Launch,
    image: &str,
    shape: JobShape,
) -> Result<Value, RenderError> {
    let Some((ns, _)) = namespace_and_queue(zone) else {
        return Err(RenderError::NoZone {
            job: launch.name.clone(),
            reason: format!(
                "zone {} runs on {}, not kubernetes",
                zone.name,
                zone.backend.kind()
            ),
        });
    };
    let pool = zone.pools.iter().find(|p| p.name == launch.pool);
    let name = k8s_name(&launch.job_id);
    let mut pod_labels = shape.labels;
    for key in RESERVED_LABELS {
        let Some(value) = launch.labels.get(key) else {
            return Err(RenderError::MissingLabel {
                job: launch.job_id.clone(),
                label: key,
            });
        };
        pod_labels.insert(key.into(), json!(value));
    }
    pod_labels.insert(MANAGED.0.into(), json!(MANAGED.1));
    pod_labels.insert("tidegate.io/job-id".into(), json!(launch.job_id));
    pod_labels.insert("tidegate.io/team".into(), json!(k8s_name(&launch.team)));
    let mut labels = pod_labels.clone();
    if let Some(q) = local_queue(zone, sched, &launch.team) {
        labels.insert("kueue.x-k8s.io/queue-name".into(), json!(q));
    }
    labels.insert("tidegate.io/zone".into(), json!(zone.name));
    let mut annotations = shape.annotations;
    annotations.insert("tidegate.io/pool".into(), json!(launch.pool));
    let mut tolerations = vec![json!({ "key": GPU, "operator": "Exists", "effect": "NoSchedule" })];
    if pool.is_some_and(|p| p.pricing == Pricing::Spot) {
        tolerations.push(
            json!({ "key": "tidegate.io/spot", "operator": "Exists", "effect": "NoSchedule" }),
        );
    }
    let mut env: Vec<Value> = [
        ("TIDEGATE_JOB_ID", launch.job_id.clone()),
        ("TIDEGATE_ZONE", launch.zone.clone()),
        ("TIDEGATE_POOL", launch.pool.clone()),
        ("TIDEGATE_GPUS", launch.gpus.to_string()),
        ("TIDEGATE_GPU_TYPE", launch.gpu_type.clone()),
        (
            "TIDEGATE_TOKEN_FILE",
            "/var/run/secrets/tidegate/token".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| json!({ "name": k, "value": v }))
    .collect();
    env.extend(
        launch
            .env
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v })),
    );
    let mut limits = Map::new();
    if launch.gpus > 0 {
        limits.insert(GPU.into(), json!(launch.gpus.to_string()));
    }
    if shape.memory_gb > 0 {
        limits.insert("memory".into(), json!(format!("{}Gi", shape.memory_gb)));
    }
    let mut container = json!({
        "name": "job",
        "image": image,
        "env": env,
        "resources": { "limits": limits.clone(), "requests": limits },
        "securityContext": { "allowPrivilegeEscalation": false, "runAsNonRoot": true, "capabilities": { "drop": ["ALL"] } },
        "volumeMounts": [{ "name": "tidegate-token", "mountPath": "/var/run/secrets/tidegate", "readOnly": true }],
    });
    if let Some(o) = container.as_object_mut() {
        if launch.command.is_empty() && shape.stand_in {
            let secs = launch.stand_in_seconds.clamp(0.0, 86_400.0);
            o.insert(
                "command".into(),
                json!([
                    "sh",
                    "-c",
                    format!("echo tidegate stand-in; sleep {secs:.3}; echo done")
                ]),
            );
        } else if !launch.command.is_empty() {
            o.insert("command".into(), json!(launch.command));
        }
    }
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "serviceAccountName": service_account_name(&launch.job_id),
        "automountServiceAccountToken": false,
        "tolerations": tolerations,
        "containers": [container],
        "volumes": [{ "name": "tidegate-token", "projected": { "sources": [{
            "serviceAccountToken": { "audience": "tidegate", "expirationSeconds": 600, "path": "token" },
        }] } }],
    });
    if let (Some(o), false) = (pod_spec.as_object_mut(), launch.gpu_type.is_empty()) {
        o.insert("affinity".into(), json!({ "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [{
            "matchExpressions": [{ "key": "tidegate.io/gpu-type", "operator": "In", "values": [k8s_name(&launch.gpu_type)] }],
        }] } } }));
        o.insert(
            "nodeSelector".into(),
            json!({ "tidegate.io/pool": k8s_name(&launch.pool) }),
        );
    }
    let mut spec = json!({
        "suspend": true,
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 86_400,
        "template": { "metadata": { "labels": pod_labels }, "spec": pod_spec },
    });
    if let (Some(o), true) = (spec.as_object_mut(), launch.time_limit_s > 0) {
        o.insert("activeDeadlineSeconds".into(), json!(launch.time_limit_s));
    }
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name, "namespace": ns, "labels": labels, "annotations": annotations },
        "spec": spec,
    }))
}

/// A renderer for the Kubernetes executor (`tidegate_kube::Renderer` is
/// `Arc<dyn Fn(&Launch) -> Result<Value, String> + Send + Sync>`): every launch in `zone` becomes
/// the same Job `tidegate render --target k8s` prints, in the zone's namespace and LocalQueue.
/// The executor still needs the per-job ServiceAccount to exist (the fleet objects do not
/// create it); a cluster that prefers one shared account can patch `serviceAccountName`.
pub fn launch_renderer(
    zone: Zone,
    sched: Scheduling,
    image: String,
) -> impl Fn(&Launch) -> Result<Value, String> + Send + Sync {
    move |launch: &Launch| {
        launch_job(
            &zone,
            &sched,
            launch,
            &image,
            JobShape {
                stand_in: true,
                ..JobShape::default()
            },
        )
        .map_err(|e| e.to_string())
    }
}
