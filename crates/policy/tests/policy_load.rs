//! Policy loading fails closed with file:line errors; verdicts name the deciding policies; the
//! fact projection used for reuse never changes a verdict.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tidegate_model::fleet::PolicyFile;
use tidegate_model::{load_fleet, Fleet, JobKind, PolicyAttrs, ZoneScope};
use tidegate_policy::{JobFacts, PolicyEngine, PolicyError};

fn example() -> Fleet {
    load_fleet(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet")).unwrap()
}

fn with_policy(text: &str) -> Fleet {
    let mut f = example();
    f.policies.push(PolicyFile {
        path: PathBuf::from("policies/extra.cedar"),
        text: text.to_string(),
    });
    f
}

fn attrs() -> PolicyAttrs {
    PolicyAttrs {
        team: "icu-ml".into(),
        kind: JobKind::HpoSweep,
        level: 2,
        tags: BTreeSet::from(["deidentified".to_string()]),
        residency: None,
        private_only: false,
        required_certifications: BTreeSet::new(),
        stays_in_jurisdiction: false,
        origin_jurisdictions: BTreeSet::from(["US".to_string()]),
        scope: ZoneScope::Any,
        burst_eligible: true,
        artifacts_released: false,
    }
}

#[test]
fn example_policies_load_and_hash_is_stable() {
    let a = PolicyEngine::load(&example()).unwrap();
    let b = PolicyEngine::load(&example()).unwrap();
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash().len(), 64);
    assert_eq!(a.len(), 10);
    // Any change to the policy set changes the hash.
    let c = PolicyEngine::load(&with_policy(
        "@id(\"x\") forbid (principal, action, resource) when { principal.team == \"nobody\" };",
    ))
    .unwrap();
    assert_ne!(a.hash(), c.hash());
}

#[test]
fn syntax_error_names_file_and_line() {
    let err = PolicyEngine::load(&with_policy(
        "// first line\n\npermit (principal, action, resource)\nwhen { principal.level <= };\n",
    ))
    .unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    match &err.0[0] {
        PolicyError::Syntax { path, line, .. } => {
            assert_eq!(path, Path::new("policies/extra.cedar"));
            assert_eq!(*line, 4);
        }
        e => panic!("expected a syntax error, got {e}"),
    }
}

#[test]
fn schema_mismatch_names_file_line_and_policy() {
    let text = "@id(\"ok\")\npermit (principal, action == Action::\"place\", resource) when { principal.level < 1 };\n\n@id(\"typo\")\nforbid (principal, action == Action::\"place\", resource)\nwhen { principal.teem == \"x\" };\n";
    let err = PolicyEngine::load(&with_policy(text)).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    match &err.0[0] {
        PolicyError::Schema {
            path,
            line,
            policy,
            message,
            ..
        } => {
            assert_eq!(path, Path::new("policies/extra.cedar"));
            assert_eq!(*line, 6, "{message}");
            assert_eq!(policy, "typo");
        }
        e => panic!("expected a schema error, got {e}"),
    }
    // A type error is a schema mismatch too.
    let err = PolicyEngine::load(&with_policy(
        "permit (principal, action, resource) when { principal.level == \"high\" };",
    ))
    .unwrap_err();
    assert!(
        matches!(err.0[0], PolicyError::Schema { line: 1, .. }),
        "{err}"
    );
}

#[test]
fn duplicate_ids_and_unknown_excludes_are_errors() {
    let err = PolicyEngine::load(&with_policy(
        "@id(\"baseline.residency\") permit (principal, action, resource);",
    ))
    .unwrap_err();
    assert!(
        matches!(&err.0[0], PolicyError::DuplicateId { id, .. } if id == "baseline.residency"),
        "{err}"
    );
    let mut f = example();
    f.baseline_exclude.push("baseline.no-such-rule".into());
    let err = PolicyEngine::load(&f).unwrap_err();
    assert!(
        matches!(&err.0[0], PolicyError::UnknownExclude(id) if id == "baseline.no-such-rule"),
        "{err}"
    );
}

#[test]
fn verdicts_name_deciding_policies() {
    let fleet = example();
    let eng = PolicyEngine::load(&fleet).unwrap();
    let mut a = attrs();
    let v = eng.evaluate_all(&eng.facts(&a, "confidential"));
    let by_name = |name: &str| &v[fleet.zones.iter().position(|z| z.name == name).unwrap()];
    assert!(by_name("public-eu").allowed);
    assert!(by_name("public-eu")
        .permits
        .iter()
        .any(|p| p.id == "baseline.permit-within-ceiling"));
    let edge = by_name("edge-clinic");
    assert!(!edge.allowed);
    assert!(edge
        .forbids
        .iter()
        .any(|p| p.id == "baseline.edge-requires-released-artifacts"));
    // Not burst-eligible: public zones are forbidden, private ones still allowed.
    a.burst_eligible = false;
    let v = eng.evaluate_all(&eng.facts(&a, "confidential"));
    let pe = &v[fleet
        .zones
        .iter()
        .position(|z| z.name == "public-eu")
        .unwrap()];
    assert!(!pe.allowed);
    assert!(pe
        .forbids
        .iter()
        .any(|p| p.id == "baseline.burst-requires-eligibility"));
    assert!(
        v[fleet
            .zones
            .iter()
            .position(|z| z.name == "hospital-onprem")
            .unwrap()]
        .allowed
    );
    // A fleet policy forbids by team.
    a.team = "finance-risk".into();
    a.burst_eligible = true;
    let v = eng.evaluate_all(&eng.facts(&a, "confidential"));
    let pe = &v[fleet
        .zones
        .iter()
        .position(|z| z.name == "public-us")
        .unwrap()];
    assert!(
        pe.forbids
            .iter()
            .any(|p| p.id == "hospital.finance-stays-private"),
        "{pe:?}"
    );
}

#[test]
fn no_permit_means_deny() {
    let mut f = example();
    f.baseline_exclude
        .push("baseline.permit-within-ceiling".into());
    let eng = PolicyEngine::load(&f).unwrap();
    let v = eng.evaluate_all(&eng.facts(&attrs(), "confidential"));
    assert!(v.iter().all(|z| !z.allowed));
    let onprem = f
        .zones
        .iter()
        .position(|z| z.name == "hospital-onprem")
        .unwrap();
    assert!(
        v[onprem].reasons()[0].contains("default deny"),
        "{:?}",
        v[onprem].reasons()
    );
}

fn arb_attrs() -> impl Strategy<Value = PolicyAttrs> {
    let set = |xs: &'static [&'static str]| {
        proptest::sample::subsequence(xs, 0..=xs.len())
            .prop_map(|v| v.into_iter().map(String::from).collect::<BTreeSet<_>>())
    };
    (
        proptest::sample::select(vec!["icu-ml", "finance-risk", "radiology-ai"]),
        proptest::sample::select(JobKind::ALL.to_vec()),
        0u8..4,
        set(&["phi", "pii", "pci", "export-controlled", "ip"]),
        proptest::option::of(set(&["EU", "US", "UK"])),
        any::<bool>(),
        set(&["hipaa-baa", "iso27001", "soc2", "pci-dss"]),
        any::<bool>(),
        set(&["EU", "US"]),
        proptest::sample::select(vec![
            "any",
            "private",
            "public",
            "edge",
            "public-eu",
            "edge-clinic",
            "hospital-onprem",
        ]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                team,
                kind,
                level,
                tags,
                residency,
                private_only,
                certs,
                stays,
                origin,
                scope,
                burst,
                released,
            )| PolicyAttrs {
                team: team.into(),
                kind,
                level,
                tags,
                residency,
                private_only,
                required_certifications: certs,
                stays_in_jurisdiction: stays,
                origin_jurisdictions: origin,
                scope: match scope {
                    "any" => ZoneScope::Any,
                    "private" => ZoneScope::Private,
                    "public" => ZoneScope::Public,
                    "edge" => ZoneScope::Edge,
                    z => ZoneScope::Zone(z.into()),
                },
                burst_eligible: burst,
                artifacts_released: released,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The projection used for reuse is exact: projected facts (per zone) give the same verdict
    /// as the full facts evaluated from scratch.
    #[test]
    fn projection_never_changes_a_verdict(a in arb_attrs()) {
        let fleet = example();
        let eng = PolicyEngine::load(&fleet).unwrap();
        let level = fleet.scheme.level_name(a.level).to_string();
        let projected = eng.evaluate_all(&eng.facts(&a, &level));
        for (z, verdict) in projected.iter().enumerate() {
            let naive = eng.evaluate_one_naive(&a, &level, z);
            prop_assert_eq!(verdict, &naive);
            let full = eng.evaluate_zone(&JobFacts::full(&a, &level), z);
            prop_assert_eq!(&full, &naive);
        }
    }
}

/// Policies that compare zone attributes with literals and with job attributes, to exercise the
/// zone-side projection.
const TRICKY: &str = r#"
@id("t.zone-literal")
forbid (principal, action == Action::"place", resource)
when { resource.name == "public-us" && principal.kind == "eval" };

@id("t.team-is-provider")
forbid (principal, action == Action::"place", resource)
when { principal.team == resource.provider };

@id("t.region")
permit (principal, action == Action::"place", resource)
when { resource.region != "eu-central-1" && principal.level < 3 };

@id("t.scope-name")
forbid (principal, action == Action::"place", resource)
when { principal.scope == resource.name && resource.tier == "edge" };
"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn zone_projection_never_changes_a_verdict(a in arb_attrs(), team_is_provider in any::<bool>()) {
        let mut a = a;
        if team_is_provider {
            a.team = "gpuaas".into();
        }
        let fleet = with_policy(TRICKY);
        let eng = PolicyEngine::load(&fleet).unwrap();
        let level = fleet.scheme.level_name(a.level).to_string();
        let projected = eng.evaluate_all(&eng.facts(&a, &level));
        for (z, verdict) in projected.iter().enumerate() {
            prop_assert_eq!(verdict, &eng.evaluate_one_naive(&a, &level, z));
        }
    }
}

#[test]
fn zones_with_equal_projections_share_a_key() {
    let fleet = example();
    let eng = PolicyEngine::load(&fleet).unwrap();
    let f = eng.facts(&attrs(), "confidential");
    let zi = |n: &str| fleet.zones.iter().position(|z| z.name == n).unwrap();
    let (us, eu) = (zi("public-us"), zi("public-eu"));
    // The baseline reads the jurisdiction, so EU and US public zones differ...
    assert_ne!(
        eng.zone_key(&eng.zone_facts(&f, us), us),
        eng.zone_key(&eng.zone_facts(&f, eu), eu)
    );
    // ...but their names and regions, which no policy reads for this job, are erased.
    let key = eng.zone_key(&eng.zone_facts(&f, us), us);
    assert!(
        !format!("{key:?}").contains("public-us") && !format!("{key:?}").contains("us-east-1"),
        "{key:?}"
    );
}

#[test]
fn the_policy_hash_covers_the_classification_scheme() {
    let base = PolicyEngine::load(&example()).unwrap();
    // A stricter tag, a new certification or a new level all change the hash, and the document
    // the hash is taken over carries the scheme.
    let mut f = example();
    f.scheme
        .tags
        .iter_mut()
        .find(|t| t.name == "pii")
        .unwrap()
        .private_only = true;
    assert_ne!(PolicyEngine::load(&f).unwrap().hash(), base.hash());
    let mut f = example();
    f.scheme
        .tags
        .iter_mut()
        .find(|t| t.name == "ip")
        .unwrap()
        .requires_certifications
        .push("iso27001".into());
    assert_ne!(PolicyEngine::load(&f).unwrap().hash(), base.hash());
    let mut f = example();
    f.scheme.levels.push(tidegate_model::LevelDef {
        name: "secret".into(),
        private_only: true,
        description: String::new(),
    });
    assert_ne!(PolicyEngine::load(&f).unwrap().hash(), base.hash());
    // So does the home jurisdiction, which decides where export-controlled work may run.
    let mut f = example();
    f.home_jurisdiction = Some("EU".into());
    assert_ne!(PolicyEngine::load(&f).unwrap().hash(), base.hash());
    let doc = String::from_utf8_lossy(base.document()).into_owned();
    assert!(
        doc.contains("classification-scheme") && doc.contains("\"hipaa-baa\""),
        "the document carries the scheme"
    );
}

#[test]
fn a_weakened_scheme_built_in_code_does_not_load() {
    let mut f = example();
    f.scheme
        .levels
        .iter_mut()
        .find(|l| l.name == "restricted")
        .unwrap()
        .private_only = false;
    let err = PolicyEngine::load(&f).unwrap_err();
    assert!(
        err.0
            .iter()
            .any(|e| matches!(e, PolicyError::WeakScheme(m) if m.contains("restricted"))),
        "{err}"
    );
    let mut f = example();
    f.scheme.tags.retain(|t| t.name != "export-controlled");
    let err = PolicyEngine::load(&f).unwrap_err();
    assert!(
        err.0
            .iter()
            .any(|e| matches!(e, PolicyError::WeakScheme(m) if m.contains("export-controlled"))),
        "{err}"
    );
}
