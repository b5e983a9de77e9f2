//! Golden files for the example fleet and jobs (Kubernetes/Kueue objects, sbatch scripts,
//! nftables rulesets), the YAML round trip of every rendered object, and the shape checks of
//! the objects that matter (Job, ClusterQueue, NetworkPolicy).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tidegate_model::{load_fleet_with_scheduling, load_jobs_dir, Fleet, Scheduling};
use tidegate_render::{k8s, nft, pick_zone, slurm, yaml, Addresses};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fleet() -> (Fleet, Scheduling) {
    load_fleet_with_scheduling(&root().join("examples/fleet")).unwrap()
}

fn addresses() -> Addresses {
    BTreeMap::from([(
        "hospital-onprem".to_string(),
        vec!["10.20.0.0/16".to_string(), "fd00:20::/48".to_string()],
    )])
}

fn roundtrip(v: &Value) {
    let text = yaml::to_yaml(v);
    let back: Value = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("YAML does not parse back: {e}\n{text}"));
    assert_eq!(&back, v, "YAML round trip changed the value:\n{text}");
}

#[test]
fn fleet_objects_match_golden_files() {
    let (fleet, sched) = fleet();
    let objs = k8s::fleet_objects(&fleet, &sched, &addresses());
    let mut all = String::new();
    for o in &objs {
        roundtrip(&o.value);
        all.push_str(&format!("# {}\n{}---\n", o.path, yaml::to_yaml(&o.value)));
    }
    // Stable: rendering twice gives the same files in the same order.
    assert_eq!(objs, k8s::fleet_objects(&fleet, &sched, &addresses()));
    let paths: Vec<&str> = objs.iter().map(|o| o.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "files come in path order");
    insta::assert_snapshot!("fleet_objects", all);
}

#[test]
fn kueue_quotas_follow_pools_and_team_quotas() {
    let (fleet, sched) = fleet();
    let objs = k8s::fleet_objects(&fleet, &sched, &Addresses::new());
    let get = |path: &str| {
        objs.iter()
            .find(|o| o.path == path)
            .unwrap_or_else(|| panic!("no {path}"))
            .value
            .clone()
    };
    // public-eu: H100 128 and H200 64 + 64; every flavor once.
    let flavors: Vec<&str> = objs
        .iter()
        .filter(|o| o.path.starts_with("public-eu/10-resourceflavor"))
        .map(|o| o.path.as_str())
        .collect();
    assert_eq!(
        flavors,
        [
            "public-eu/10-resourceflavor-gpu-h100.yaml",
            "public-eu/10-resourceflavor-gpu-h200.yaml"
        ]
    );
    // Team nominal quotas (public: icu-ml 128, radiology-ai 64, research-it 64) fill the zone's
    // 256 GPUs in declaration order; the zone queue keeps what is left (nothing).
    let icu = get("public-eu/20-clusterqueue-public-eu-icu-ml.yaml");
    let rg = &icu["spec"]["resourceGroups"][0];
    assert_eq!(rg["coveredResources"], json!(["nvidia.com/gpu"]));
    assert_eq!(rg["flavors"][0]["name"], "gpu-h100");
    assert_eq!(rg["flavors"][0]["resources"][0]["nominalQuota"], 128);
    assert_eq!(rg["flavors"][0]["resources"][0]["borrowingLimit"], 64);
    assert_eq!(icu["spec"]["cohort"], "public-eu");
    assert_eq!(icu["spec"]["fairSharing"]["weight"], "2");
    assert_eq!(
        icu["metadata"]["annotations"]["tidegate.io/budget-money"],
        "250000"
    );
    let zone = get("public-eu/20-clusterqueue-public-eu.yaml");
    let total: u64 = zone["spec"]["resourceGroups"][0]["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["resources"][0]["nominalQuota"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 0);
    // clinical-trials has no public quota: no ClusterQueue there.
    assert!(!objs
        .iter()
        .any(|o| o.path == "public-eu/20-clusterqueue-public-eu-clinical-trials.yaml"));
    let lq = get("public-eu/30-localqueue-icu-ml.yaml");
    assert_eq!(lq["metadata"]["namespace"], "tidegate-burst");
    assert_eq!(lq["spec"]["clusterQueue"], "public-eu-icu-ml");
    // Slurm zones have no Kubernetes objects.
    assert!(!objs.iter().any(|o| o.path.starts_with("hospital-onprem/")));
}

#[test]
fn network_policy_denies_egress_except_dns_and_the_allowlist() {
    let (fleet, sched) = fleet();
    let objs = k8s::fleet_objects(&fleet, &sched, &addresses());
    let np = &objs
        .iter()
        .find(|o| o.path == "public-eu/40-networkpolicy-tidegate-egress.yaml")
        .unwrap()
        .value;
    assert_eq!(np["spec"]["policyTypes"], json!(["Egress"]));
    assert_eq!(np["spec"]["podSelector"], json!({}));
    let egress = np["spec"]["egress"].as_array().unwrap();
    assert_eq!(egress.len(), 2);
    assert_eq!(
        egress[0]["ports"][0],
        json!({"protocol": "UDP", "port": 53})
    );
    assert_eq!(
        egress[1]["to"],
        json!([{"ipBlock": {"cidr": "10.20.0.0/16"}}, {"ipBlock": {"cidr": "fd00:20::/48"}}])
    );
    // Without addresses the zone destination stays blocked and is named in an annotation.
    let objs = k8s::fleet_objects(&fleet, &sched, &Addresses::new());
    let np = &objs
        .iter()
        .find(|o| o.path == "public-eu/40-networkpolicy-tidegate-egress.yaml")
        .unwrap()
        .value;
    assert_eq!(np["spec"]["egress"].as_array().unwrap().len(), 1);
    assert_eq!(
        np["metadata"]["annotations"]["tidegate.io/unresolved-egress"],
        "hospital-onprem"
    );
}

#[test]
fn example_jobs_render_for_kubernetes_and_slurm() {
    let (fleet, sched) = fleet();
    let jobs = load_jobs_dir(&root().join("examples/jobs"), &fleet).unwrap();
    assert!(jobs.len() >= 5);
    let addrs = addresses();
    let mut k8s_out = String::new();
    let mut slurm_out = String::new();
    for job in &jobs {
        match pick_zone(job, &fleet.zones, "kubernetes", None) {
            Ok(zone) => {
                let objs = k8s::job_objects(
                    k8s::Context {
                        fleet: &fleet,
                        sched: &sched,
                        addrs: &addrs,
                    },
                    job,
                    &job.name,
                    zone,
                    None,
                    "registry.example/tidegate-job:1",
                )
                .unwrap();
                for o in &objs {
                    roundtrip(o);
                }
                let j = &objs[1];
                assert_eq!(j["kind"], "Job");
                let labels = &j["metadata"]["labels"];
                assert_eq!(labels["tidegate.io/job-id"], job.name.as_str());
                assert!(labels["kueue.x-k8s.io/queue-name"].is_string());
                assert!(labels["burst_eligible"].is_string());
                assert_eq!(j["spec"]["suspend"], true);
                let pod = &j["spec"]["template"]["spec"];
                assert_eq!(
                    pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
                    job.resources.gpus.to_string()
                );
                assert_eq!(pod["automountServiceAccountToken"], false);
                assert_eq!(
                    pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
                        ["expirationSeconds"],
                    600
                );
                assert_eq!(objs[0]["kind"], "ServiceAccount");
                assert_eq!(objs[2]["kind"], "NetworkPolicy");
                k8s_out.push_str(&format!(
                    "# {} -> {}\n{}",
                    job.name,
                    zone.name,
                    yaml::to_yaml_stream(&objs)
                ));
            }
            Err(e) => k8s_out.push_str(&format!("# {}: {e}\n", job.name)),
        }
        match pick_zone(job, &fleet.zones, "slurm", None) {
            Ok(zone) => {
                let s = slurm::batch_script(
                    job,
                    &job.name,
                    zone,
                    None,
                    Path::new("/var/lib/tidegate/slurm/hospital-onprem"),
                )
                .unwrap();
                assert!(s.contains(&format!("#SBATCH --comment=tidegate:{}", job.name)));
                slurm_out.push_str(&format!("# ==== {} -> {}\n{s}", job.name, zone.name));
            }
            Err(e) => slurm_out.push_str(&format!("# ==== {}: {e}\n", job.name)),
        }
        k8s_out.push_str("---\n");
    }
    insta::assert_snapshot!("example_jobs_k8s", k8s_out);
    insta::assert_snapshot!("example_jobs_slurm", slurm_out);
}

#[test]
fn rendered_jobs_carry_the_effective_labels_where_the_spec_omits_them() {
    let (fleet, sched) = fleet();
    let jobs = load_jobs_dir(&root().join("examples/jobs"), &fleet).unwrap();
    let addrs = addresses();
    let cx = k8s::Context {
        fleet: &fleet,
        sched: &sched,
        addrs: &addrs,
    };
    // Written: data_classification internal, burst_eligible true; no allowed_execution_zone. It
    // reads restricted CT imaging, so the effective values are restricted, private, false.
    let ct = jobs.iter().find(|j| j.name == "mislabeled-ct").unwrap();
    assert!(ct.labels.allowed_execution_zone.is_none());
    // Written: only burst_eligible; its input is public.
    let lit = jobs
        .iter()
        .find(|j| j.name == "literature-finetune")
        .unwrap();
    assert!(
        lit.labels.data_classification.is_none() && lit.labels.allowed_execution_zone.is_none()
    );
    for (job, zone, want) in [
        (ct, "private-cloud", ["restricted", "private", "false"]),
        (lit, "public-eu", ["public", "any", "true"]),
    ] {
        let zone = fleet.zone(zone).unwrap();
        let objs = k8s::job_objects(cx, job, &job.name, zone, None, "img:1").unwrap();
        let (sa, j) = (&objs[0], &objs[1]);
        assert_eq!(j["kind"], "Job");
        for labels in [
            &j["metadata"]["labels"],
            &j["spec"]["template"]["metadata"]["labels"],
            &sa["metadata"]["labels"],
        ] {
            for (key, value) in [
                "data_classification",
                "allowed_execution_zone",
                "burst_eligible",
            ]
            .into_iter()
            .zip(want)
            {
                assert_eq!(labels[key], value, "{}: {key} in {labels}", job.name);
            }
        }
    }
}

/// That the Slurm executor submits exactly this script is checked beside the executor
/// (`crates/slurm/tests/fake_slurm.rs`), which takes this renderer.
#[test]
fn rendered_slurm_script_maps_resources_partition_and_account() {
    let (fleet, _) = fleet();
    let jobs = load_jobs_dir(&root().join("examples/jobs"), &fleet).unwrap();
    let job = jobs.iter().find(|j| j.name == "sepsis-train").unwrap();
    let zone = fleet.zone("hospital-onprem").unwrap();
    let state = Path::new("/srv/tidegate/slurm");
    let rendered = slurm::batch_script(job, "sepsis-train", zone, None, state).unwrap();
    let pool = tidegate_render::pick_pool(job, zone, None).unwrap();
    let launch = tidegate_render::launch_for(job, "sepsis-train", zone, pool);
    let at = slurm::placement(&zone.backend, &launch).unwrap();
    assert_eq!(
        rendered,
        slurm::script(&launch, &at, &state.join("sepsis-train")).unwrap()
    );
    for want in [
        "--gres=gpu:h100:16",
        "--partition=gpu",
        "--account=research",
        "--time=1-12:00:00",
    ] {
        assert!(rendered.contains(want), "{want} missing:\n{rendered}");
    }
}

#[test]
fn nftables_rulesets_match_golden_files() {
    let (fleet, _) = fleet();
    let known: Vec<String> = fleet.zones.iter().map(|z| z.name.clone()).collect();
    let mut out = String::new();
    for z in &fleet.zones {
        out.push_str(&nft::ruleset(z, &known, &addresses()));
        out.push_str("# ----\n");
    }
    assert!(out.contains("set zone_hospital_onprem_v4 {\n    type ipv4_addr\n    flags interval\n    elements = { 10.20.0.0/16 }"));
    assert!(
        out.contains("# Placeholder: zone private_cloud")
            || out.contains("# Placeholder: zone private-cloud")
    );
    insta::assert_snapshot!("nftables", out);
}

#[test]
fn yaml_emitter_quotes_what_yaml_would_misread() {
    let v = json!({
        "a": "true", "b": "1.5", "c": "", "d": "x: y", "e": "#c", "f": "plain-text/ok", "g": "0755",
        "h": [], "i": {}, "j": [[1, 2], {"k": null}], "l": "multi\nline", "m": "nvidia.com/gpu", "n": "512Gi", "o": "no",
    });
    roundtrip(&v);
    let text = yaml::to_yaml(&v);
    assert!(
        text.contains("f: plain-text/ok\n")
            && text.contains("m: nvidia.com/gpu\n")
            && text.contains("a: \"true\"\n"),
        "{text}"
    );
}
