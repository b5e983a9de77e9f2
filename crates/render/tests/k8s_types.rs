//! Rendered core Kubernetes objects (Job, ServiceAccount, NetworkPolicy, Namespace) against the
//! `k8s-openapi` API types: each deserialises into its type and serialises back to the same
//! value, so no field is misspelt, misplaced or of the wrong type (an unknown field would be
//! dropped and the round trip would differ). Also the launch renderer the Kubernetes executor
//! takes. Kueue objects have no types there; `golden.rs` checks their shape.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;
use tidegate_exec::Launch;
use tidegate_model::{load_fleet_with_scheduling, load_jobs_dir};
use tidegate_render::{k8s, pick_zone, Addresses};

fn same_through<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) {
    let typed: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("not a valid {}: {e}\n{v:#}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back,
        v,
        "{} dropped or changed fields",
        std::any::type_name::<T>()
    );
}

fn check(v: &Value) {
    match v["kind"].as_str().unwrap() {
        "Job" => same_through::<Job>(v),
        "ServiceAccount" => same_through::<ServiceAccount>(v),
        "NetworkPolicy" => same_through::<NetworkPolicy>(v),
        "Namespace" => same_through::<Namespace>(v),
        other => assert!(
            matches!(other, "ResourceFlavor" | "ClusterQueue" | "LocalQueue"),
            "unexpected kind {other}"
        ),
    }
}

#[test]
fn rendered_core_objects_are_valid_kubernetes_objects() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (fleet, sched) = load_fleet_with_scheduling(&root.join("examples/fleet")).unwrap();
    let addrs = Addresses::from([(
        "hospital-onprem".to_string(),
        vec!["10.20.0.0/16".to_string()],
    )]);
    for o in k8s::fleet_objects(&fleet, &sched, &addrs) {
        check(&o.value);
    }
    let cx = k8s::Context {
        fleet: &fleet,
        sched: &sched,
        addrs: &addrs,
    };
    let mut n = 0;
    for job in load_jobs_dir(&root.join("examples/jobs"), &fleet).unwrap() {
        let Ok(zone) = pick_zone(&job, &fleet.zones, "kubernetes", None) else {
            continue;
        };
        for v in k8s::job_objects(cx, &job, &job.name, zone, None, "img:1").unwrap() {
            check(&v);
            n += 1;
        }
    }
    assert!(n >= 9, "only {n} job objects checked");
}

#[test]
fn the_launch_renderer_gives_a_valid_job_in_the_zone_queue() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (fleet, sched) = load_fleet_with_scheduling(&root.join("examples/fleet")).unwrap();
    let zone = fleet.zone("public-us").unwrap().clone();
    let render = k8s::launch_renderer(zone, sched, "img:2".into());
    let launch = Launch {
        job_id: "J42.1".into(),
        name: "hpo".into(),
        team: "research-it".into(),
        zone: "public-us".into(),
        pool: "h100-spot".into(),
        gpus: 4,
        gpu_type: "H100".into(),
        command: Vec::new(),
        stand_in_seconds: 1.5,
        time_limit_s: 600,
        env: vec![("SEED".into(), "7".into())],
        labels: [
            ("data_classification", "confidential"),
            ("allowed_execution_zone", "any"),
            ("burst_eligible", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    };
    let v = render(&launch).unwrap();
    same_through::<Job>(&v);
    // The launch's effective labels are on the Job and on its pods.
    for labels in [
        &v["metadata"]["labels"],
        &v["spec"]["template"]["metadata"]["labels"],
    ] {
        assert_eq!(labels["data_classification"], "confidential", "{labels}");
        assert_eq!(labels["allowed_execution_zone"], "any", "{labels}");
        assert_eq!(labels["burst_eligible"], "true", "{labels}");
    }
    // A launch missing one of them is not rendered: nothing unlabelled reaches the cluster.
    for key in [
        "data_classification",
        "allowed_execution_zone",
        "burst_eligible",
    ] {
        let mut bare = launch.clone();
        bare.labels.remove(key);
        let err = render(&bare).unwrap_err();
        assert!(err.contains(key), "{key}: {err}");
    }
    assert_eq!(
        v["metadata"]["labels"]["kueue.x-k8s.io/queue-name"],
        "research-it"
    );
    let pod = &v["spec"]["template"]["spec"];
    assert_eq!(pod["tolerations"][1]["key"], "tidegate.io/spot");
    assert_eq!(
        pod["containers"][0]["command"][2],
        "echo tidegate stand-in; sleep 1.500; echo done"
    );
    assert_eq!(
        pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        "4"
    );
    assert!(pod["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "SEED"));
    // A zone that is not on Kubernetes is refused.
    let slurm_zone = fleet.zone("hospital-onprem").unwrap().clone();
    let (_, sched) = load_fleet_with_scheduling(&root.join("examples/fleet")).unwrap();
    assert!(k8s::launch_renderer(slurm_zone, sched, "img".into())(&launch).is_err());
}
