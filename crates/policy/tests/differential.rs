//! Differential test of verdict reuse: random Cedar policies over the generated schema, using
//! every expression form the schema allows (entity literals, `in`, `is`, `has`, `like`,
//! `contains`, `containsAll`, `containsAny`, `isEmpty`, `if-then-else`, records, sets,
//! arithmetic, `&&`, `||`, `!`, comparisons, and the extension functions `ip()`, `decimal()`,
//! `datetime()` and `duration()` with their methods),
//! random zones and random jobs. The reused verdict (projected facts, projected zone, shared
//! through a cache keyed exactly as the placement engine keys it) must agree with plain Cedar
//! evaluation on every (job, zone).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tidegate_model::fleet::PolicyFile;
use tidegate_model::{load_fleet, Fleet, JobKind, PolicyAttrs, Tier, Zone, ZoneScope};
use tidegate_policy::{JobFacts, PolicyEngine, Val, ZoneVerdict};

/// SplitMix64, so a seed names one generated case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn subset(&mut self, xs: &[&str]) -> BTreeSet<String> {
        xs.iter()
            .filter(|_| self.chance(40))
            .map(|s| (*s).to_string())
            .collect()
    }
}

const ZONE_NAMES: [&str; 6] = [
    "hospital-onprem",
    "public-us",
    "public-eu",
    "edge-clinic",
    "zone",
    "<other>",
];
const TEAMS: [&str; 6] = [
    "genomics",
    "icu-ml",
    "finance-risk",
    "gpuaas",
    "<other>",
    "<other>~",
];
const PROVIDERS: [&str; 4] = ["gpuaas", "st-elsewhere-it", "genomics", "<other>"];
const REGIONS: [&str; 3] = ["us-east-1", "eu-central-1", "boston-dc1"];
const JURIS: [&str; 3] = ["US", "EU", "UK"];
const CERTS: [&str; 4] = ["hipaa-baa", "iso27001", "soc2", "pci-dss"];
const TAGS: [&str; 5] = ["phi", "pii", "pci", "export-controlled", "ip"];
const TIERS: [Tier; 4] = [
    Tier::PrivateOnprem,
    Tier::PrivateCloud,
    Tier::Public,
    Tier::Edge,
];
const SCOPES: [&str; 4] = ["any", "private", "public", "edge"];

const JOB_STR: [&str; 4] = ["team", "kind", "level_name", "scope"];
const JOB_BOOL: [&str; 5] = [
    "residency_restricted",
    "private_only",
    "stays_in_jurisdiction",
    "burst_eligible",
    "artifacts_released",
];
const JOB_SET: [&str; 4] = [
    "tags",
    "residency",
    "required_certifications",
    "origin_jurisdictions",
];
const ZONE_STR: [&str; 7] = [
    "name",
    "tier",
    "scope",
    "provider",
    "region",
    "jurisdiction",
    "ceiling_name",
];

/// Random, well-typed Cedar text over the generated schema.
struct Gen<'a> {
    rng: Rng,
    zones: &'a [String],
    /// Whether entity literals and bare `principal` / `resource` may appear (they switch
    /// projection off); without them the projection is exercised in full.
    entities: bool,
}

impl Gen<'_> {
    fn string_lit(&mut self) -> String {
        let pools: [&[&str]; 9] = [
            &TEAMS,
            &PROVIDERS,
            &REGIONS,
            &JURIS,
            &CERTS,
            &TAGS,
            &SCOPES,
            &[
                "serve",
                "train",
                "eval",
                "public",
                "edge",
                "private-onprem",
                "restricted",
                "confidential",
            ],
            &ZONE_NAMES,
        ];
        let pool = *self.rng.pick(&pools);
        format!("{:?}", self.rng.pick(pool))
    }

    fn job(&mut self) -> String {
        if !self.entities {
            return "principal".into();
        }
        match self.rng.below(30) {
            0..=19 => "principal".into(),
            20..=28 => "Job::\"job\"".into(),
            _ => "Job::\"ghost\"".into(),
        }
    }

    fn zone(&mut self) -> String {
        if !self.entities {
            return "resource".into();
        }
        match self.rng.below(30) {
            0..=19 => "resource".into(),
            20..=28 => format!("Zone::{:?}", self.rng.pick(self.zones)),
            _ => "Zone::\"ghost\"".into(),
        }
    }

    fn string(&mut self, d: u32) -> String {
        match self.rng.below(if d == 0 { 3 } else { 5 }) {
            0 => self.string_lit(),
            1 => {
                let attr = *self.rng.pick(&JOB_STR);
                format!("{}.{attr}", self.job())
            }
            2 => {
                let attr = *self.rng.pick(&ZONE_STR);
                format!("{}.{attr}", self.zone())
            }
            3 => format!(
                "(if {} then {} else {})",
                self.boolean(d - 1),
                self.string(d - 1),
                self.string(d - 1)
            ),
            _ => format!("{{a: {}, b: {}}}.a", self.string(d - 1), self.long(d - 1)),
        }
    }

    fn long(&mut self, d: u32) -> String {
        match self.rng.below(if d == 0 { 3 } else { 8 }) {
            0 => format!("{}", self.rng.below(5) as i64 - 1),
            1 => format!("{}.level", self.job()),
            2 => format!("{}.ceiling", self.zone()),
            3 => format!("({} + {})", self.long(d - 1), self.long(d - 1)),
            4 => format!("({} - {})", self.long(d - 1), self.long(d - 1)),
            5 => format!("({} * {})", self.long(d - 1), self.rng.below(4)),
            6 => format!("(-({}))", self.long(d - 1)),
            _ => format!(
                "(if {} then {} else {})",
                self.boolean(d - 1),
                self.long(d - 1),
                self.long(d - 1)
            ),
        }
    }

    fn set(&mut self, d: u32) -> String {
        match self.rng.below(if d == 0 { 3 } else { 4 }) {
            0 => {
                let attr = *self.rng.pick(&JOB_SET);
                format!("{}.{attr}", self.job())
            }
            1 => format!("{}.certifications", self.zone()),
            2 => {
                let n = 1 + self.rng.below(3);
                let items: Vec<String> = (0..n)
                    .map(|_| {
                        if d > 0 && self.rng.chance(30) {
                            self.string(d - 1)
                        } else {
                            self.string_lit()
                        }
                    })
                    .collect();
                format!("[{}]", items.join(", "))
            }
            _ => format!(
                "(if {} then {} else {})",
                self.boolean(d - 1),
                self.set(d - 1),
                self.set(d - 1)
            ),
        }
    }

    /// An `ipaddr` value: a literal, or a choice between two that depends on the job or zone.
    fn ip(&mut self, d: u32) -> String {
        let lits = [
            "127.0.0.1",
            "10.0.0.0/8",
            "10.1.2.3",
            "::1",
            "224.0.0.1",
            "192.168.0.0/16",
        ];
        if d > 0 && self.rng.chance(40) {
            return format!(
                "(if {} then {} else {})",
                self.boolean(d - 1),
                self.ip(0),
                self.ip(0)
            );
        }
        format!("ip({:?})", self.rng.pick(&lits))
    }

    fn decimal(&mut self, d: u32) -> String {
        let lits = ["0.5", "1.0", "1.5", "-2.25", "10.0001"];
        if d > 0 && self.rng.chance(40) {
            return format!(
                "(if {} then {} else {})",
                self.boolean(d - 1),
                self.decimal(0),
                self.decimal(0)
            );
        }
        format!("decimal({:?})", self.rng.pick(&lits))
    }

    fn datetime(&mut self, d: u32) -> String {
        let lits = ["2026-01-01", "2026-12-06T20:00:00Z", "2025-06-30"];
        if d > 0 && self.rng.chance(40) {
            return format!(
                "(if {} then {} else {})",
                self.boolean(d - 1),
                self.datetime(0),
                self.datetime(0)
            );
        }
        format!("datetime({:?})", self.rng.pick(&lits))
    }

    fn extension(&mut self, d: u32) -> String {
        match self.rng.below(7) {
            0 => {
                let m = *self
                    .rng
                    .pick(&["isIpv4", "isIpv6", "isLoopback", "isMulticast"]);
                format!("{}.{m}()", self.ip(d))
            }
            1 => format!("{}.isInRange({})", self.ip(d), self.ip(d)),
            2 => format!("({} == {})", self.ip(d), self.ip(d)),
            3 => {
                let m = *self.rng.pick(&[
                    "lessThan",
                    "lessThanOrEqual",
                    "greaterThan",
                    "greaterThanOrEqual",
                ]);
                format!("{}.{m}({})", self.decimal(d), self.decimal(d))
            }
            4 => format!("({} == {})", self.decimal(d), self.decimal(d)),
            5 => {
                let op = *self.rng.pick(&["<", "<=", ">", ">=", "=="]);
                format!("({} {op} {})", self.datetime(d), self.datetime(d))
            }
            _ => {
                let op = *self.rng.pick(&["<", "<=", ">", ">="]);
                format!(
                    "({}.offset(duration(\"1h\")) {op} {})",
                    self.datetime(d),
                    self.datetime(d)
                )
            }
        }
    }

    fn pattern(&mut self) -> String {
        let lit = self.string_lit();
        let body = lit.trim_matches('"').to_string();
        let cut = self.rng.below(body.len() + 1);
        let (a, b) = body.split_at(
            body.char_indices()
                .map(|(i, _)| i)
                .find(|i| *i >= cut)
                .unwrap_or(body.len()),
        );
        match self.rng.below(4) {
            0 => format!("\"{a}*\""),
            1 => format!("\"*{b}\""),
            2 => format!("\"{a}*{b}\""),
            _ => "\"*\"".to_string(),
        }
    }

    fn boolean(&mut self, d: u32) -> String {
        if d == 0 {
            return match self.rng.below(4) {
                0 => {
                    if self.rng.chance(50) {
                        "true".into()
                    } else {
                        "false".into()
                    }
                }
                1 => {
                    let attr = *self.rng.pick(&JOB_BOOL);
                    format!("{}.{attr}", self.job())
                }
                2 => format!("{}.private", self.zone()),
                _ => format!("({} == {})", self.string(0), self.string_lit()),
            };
        }
        let e = d - 1;
        match self.rng.below(26) {
            0 => format!("!({})", self.boolean(e)),
            1 | 2 => format!("({} && {})", self.boolean(e), self.boolean(e)),
            3 | 4 => format!("({} || {})", self.boolean(e), self.boolean(e)),
            5 | 6 => format!("({} == {})", self.string(e), self.string(e)),
            7 => format!("({} != {})", self.string(e), self.string(e)),
            8 => {
                let op = *self.rng.pick(&["<", "<=", ">", ">=", "==", "!="]);
                format!("({} {op} {})", self.long(e), self.long(e))
            }
            9 => format!("{}.contains({})", self.set(e), self.string(e)),
            10 => format!("{}.containsAll({})", self.set(e), self.set(e)),
            11 => format!("{}.containsAny({})", self.set(e), self.set(e)),
            12 => format!("{}.isEmpty()", self.set(e)),
            13 => format!("({} == {})", self.set(e), self.set(e)),
            14 => format!("({} like {})", self.string(e), self.pattern()),
            15..=18 if !self.entities => format!("({} || {})", self.boolean(e), self.boolean(e)),
            15 => {
                if self.rng.chance(50) {
                    let attr = *self.rng.pick(&JOB_STR);
                    format!("({} has {attr})", self.job())
                } else {
                    let attr = *self.rng.pick(&ZONE_STR);
                    format!("({} has {attr})", self.zone())
                }
            }
            16 => {
                if self.rng.chance(50) {
                    format!("({} is Job)", self.job())
                } else {
                    format!("({} is Zone)", self.zone())
                }
            }
            17 => {
                let lit = format!("Zone::{:?}", self.rng.pick(self.zones));
                match self.rng.below(3) {
                    0 => format!("({} == {lit})", self.zone()),
                    1 => format!("({} in {lit})", self.zone()),
                    _ => {
                        let other = format!("Zone::{:?}", self.rng.pick(self.zones));
                        format!("({} in [{lit}, {other}])", self.zone())
                    }
                }
            }
            18 => format!("({} == Job::\"job\")", self.job()),
            19 => format!(
                "(if {} then {} else {})",
                self.boolean(e),
                self.boolean(e),
                self.boolean(e)
            ),
            20 => format!(
                "({{a: {}, b: {}}} == {{a: {}, b: {}}})",
                self.string(e),
                self.long(e),
                self.string(e),
                self.long(e)
            ),
            21 => format!("({{x: {}}}.x)", self.boolean(e)),
            22 => format!("({} == {})", self.boolean(e), self.boolean(e)),
            23 | 24 => self.extension(e),
            _ => format!("({} && {})", self.boolean(e), self.boolean(e)),
        }
    }

    fn head(&mut self) -> String {
        if !self.entities {
            return "(principal, action == Action::\"place\", resource)".into();
        }
        let principal = match self.rng.below(6) {
            0 => "principal == Job::\"job\"".to_string(),
            1 => "principal is Job".to_string(),
            _ => "principal".to_string(),
        };
        let resource = match self.rng.below(8) {
            0 => format!("resource == Zone::{:?}", self.rng.pick(self.zones)),
            1 => format!("resource in Zone::{:?}", self.rng.pick(self.zones)),
            2 => "resource is Zone".to_string(),
            _ => "resource".to_string(),
        };
        let action = if self.rng.chance(70) {
            "action == Action::\"place\""
        } else {
            "action"
        };
        format!("({principal}, {action}, {resource})")
    }

    fn policy(&mut self, i: usize) -> String {
        let effect = if self.rng.chance(45) {
            "permit"
        } else {
            "forbid"
        };
        let mut text = format!("@id(\"gen.{i}\")\n{effect} {}", self.head());
        let clauses = self.rng.below(3);
        for _ in 0..clauses.max(usize::from(effect == "forbid")) {
            let kw = if self.rng.chance(75) {
                "when"
            } else {
                "unless"
            };
            let depth = 1 + self.rng.below(3) as u32;
            text.push_str(&format!("\n{kw} {{ {} }}", self.boolean(depth)));
        }
        text.push_str(";\n");
        text
    }
}

fn example() -> Fleet {
    load_fleet(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet")).unwrap()
}

fn random_zones(rng: &mut Rng, template: &Zone) -> Vec<Zone> {
    let n = 2 + rng.below(4);
    let mut names: Vec<&str> = ZONE_NAMES.to_vec();
    (0..n)
        .map(|_| {
            let name = names.remove(rng.below(names.len()));
            let mut z = template.clone();
            z.name = name.to_string();
            z.tier = *rng.pick(&TIERS);
            z.provider = (*rng.pick(&PROVIDERS)).to_string();
            z.region = (*rng.pick(&REGIONS)).to_string();
            z.jurisdiction = (*rng.pick(&JURIS)).to_string();
            z.certifications = rng.subset(&CERTS);
            z.max_classification = rng.below(4) as u8;
            z
        })
        .collect()
}

fn random_attrs(rng: &mut Rng, zones: &[String]) -> PolicyAttrs {
    let scope = match rng.below(6) {
        0 => ZoneScope::Any,
        1 => ZoneScope::Private,
        2 => ZoneScope::Public,
        3 => ZoneScope::Edge,
        _ => ZoneScope::Zone(rng.pick(zones).clone()),
    };
    PolicyAttrs {
        team: (*rng.pick(&TEAMS)).to_string(),
        kind: *rng.pick(&JobKind::ALL),
        level: rng.below(4) as u8,
        tags: rng.subset(&TAGS),
        residency: rng.chance(50).then(|| rng.subset(&JURIS)),
        private_only: rng.chance(30),
        required_certifications: rng.subset(&CERTS),
        stays_in_jurisdiction: rng.chance(30),
        origin_jurisdictions: rng.subset(&JURIS),
        scope,
        burst_eligible: rng.chance(50),
        artifacts_released: rng.chance(40),
    }
}

/// What must agree between a reused and a plain verdict.
fn outcome(v: &ZoneVerdict) -> (bool, Vec<String>, Vec<String>, bool) {
    (
        v.allowed,
        v.permits.iter().map(|p| p.id.clone()).collect(),
        v.forbids.iter().map(|p| p.id.clone()).collect(),
        v.errors.is_empty(),
    )
}

/// One generated case: a fleet with random zones and policies, and random jobs.
fn run_case(seed: u64) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let mut fleet = example();
    let template = fleet.zones[0].clone();
    fleet.zones = random_zones(&mut rng, &template);
    let zone_names: Vec<String> = fleet.zones.iter().map(|z| z.name.clone()).collect();
    let entities = rng.chance(40);
    let mut g = Gen {
        rng: Rng(seed ^ 0xD1FF),
        zones: &zone_names,
        entities,
    };
    let n = 1 + g.rng.below(3);
    let text: String = (0..n).map(|i| g.policy(i)).collect::<Vec<_>>().join("\n");
    fleet.policies = vec![PolicyFile {
        path: PathBuf::from("policies/gen.cedar"),
        text: text.clone(),
    }];
    // Switch some baseline rules off so generated permits and forbids decide more often.
    fleet.baseline_exclude = [
        "baseline.permit-within-ceiling",
        "baseline.sensitive-stays-private",
        "baseline.residency",
        "baseline.public-certifications",
        "baseline.export-control",
        "baseline.burst-requires-eligibility",
        "baseline.edge-requires-released-artifacts",
        "baseline.allowed-execution-zone",
    ]
    .iter()
    .filter(|_| rng.chance(50))
    .map(|s| (*s).to_string())
    .collect();
    let eng = match PolicyEngine::load(&fleet) {
        Ok(e) => e,
        Err(e) => panic!("generated policies must validate (seed {seed}):\n{text}\n{e}"),
    };
    // The cache the placement engine keeps: (projected zone, zone-projected facts) -> verdict.
    let mut cache: HashMap<(Vec<Val>, JobFacts), ZoneVerdict> = HashMap::new();
    for _ in 0..8 {
        let a = random_attrs(&mut rng, &zone_names);
        let level = fleet.scheme.level_name(a.level).to_string();
        let facts = eng.facts(&a, &level);
        for z in 0..fleet.zones.len() {
            let zf = eng.zone_facts(&facts, z);
            let key = (eng.zone_key(&zf, z), zf.clone());
            let reused = cache
                .entry(key)
                .or_insert_with(|| eng.evaluate_keyed(&eng.zone_key(&zf, z), &zf, z))
                .clone();
            let plain = eng.evaluate_plain(&a, &level, z);
            prop_assert_eq!(
                outcome(&reused),
                outcome(&plain),
                "seed {}: zone {} job {:?}\npolicies:\n{}\nprojection:\n{}\nreused {:?}\nplain {:?}",
                seed,
                fleet.zones[z].name,
                a,
                text,
                eng.projection(),
                reused,
                plain
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Reused verdicts agree with plain Cedar on random policies, zones and jobs.
    #[test]
    fn reused_verdicts_agree_with_plain_cedar(seed in any::<u64>()) {
        run_case(seed)?;
    }
}

/// The case the property test is built around: a policy that reads the job through an entity
/// literal. Before, the projection erased `team` and the forbid never applied.
#[test]
fn an_entity_literal_keeps_the_attribute_it_reads() {
    let mut fleet = example();
    fleet.policies.push(PolicyFile {
        path: PathBuf::from("policies/genomics.cedar"),
        text: "@id(\"genomics.private\")\nforbid (principal, action, resource) when { Job::\"job\".team == \"genomics\" && !resource.private };\n".into(),
    });
    let eng = PolicyEngine::load(&fleet).unwrap();
    let us = fleet
        .zones
        .iter()
        .position(|z| z.name == "public-us")
        .unwrap();
    let onprem = fleet
        .zones
        .iter()
        .position(|z| z.name == "hospital-onprem")
        .unwrap();
    let mut a = PolicyAttrs {
        team: "genomics".into(),
        kind: JobKind::Train,
        level: 2,
        tags: BTreeSet::new(),
        residency: None,
        private_only: false,
        required_certifications: BTreeSet::new(),
        stays_in_jurisdiction: false,
        origin_jurisdictions: BTreeSet::new(),
        scope: ZoneScope::Any,
        burst_eligible: true,
        artifacts_released: false,
    };
    let v = eng.evaluate_all(&eng.facts(&a, "confidential"));
    assert!(!v[us].allowed, "{:?}", v[us]);
    assert!(
        v[us].forbids.iter().any(|f| f.id == "genomics.private"),
        "{:?}",
        v[us]
    );
    assert!(v[onprem].allowed, "{:?}", v[onprem]);
    assert_eq!(v[us], eng.evaluate_plain(&a, "confidential", us));
    // Another team is not caught by it.
    a.team = "icu-ml".into();
    let v = eng.evaluate_all(&eng.facts(&a, "confidential"));
    assert!(v[us].allowed, "{:?}", v[us]);
}

/// Entity literals naming zones see the zone as it is, in both ways of evaluating.
#[test]
fn a_zone_literal_reads_that_zone() {
    let mut fleet = example();
    fleet.policies.push(PolicyFile {
        path: PathBuf::from("policies/zones.cedar"),
        text: "@id(\"z.us-down\")\nforbid (principal, action, resource) when { !Zone::\"public-us\".private && principal.kind == \"eval\" };\n".into(),
    });
    let eng = PolicyEngine::load(&fleet).unwrap();
    let a = PolicyAttrs {
        team: "icu-ml".into(),
        kind: JobKind::Eval,
        level: 0,
        tags: BTreeSet::new(),
        residency: None,
        private_only: false,
        required_certifications: BTreeSet::new(),
        stays_in_jurisdiction: false,
        origin_jurisdictions: BTreeSet::new(),
        scope: ZoneScope::Any,
        burst_eligible: true,
        artifacts_released: true,
    };
    let v = eng.evaluate_all(&eng.facts(&a, "public"));
    for (z, verdict) in v.iter().enumerate() {
        assert!(
            verdict.forbids.iter().any(|f| f.id == "z.us-down"),
            "{}: {verdict:?}",
            fleet.zones[z].name
        );
        assert!(verdict.errors.is_empty(), "{verdict:?}");
        assert_eq!(verdict, &eng.evaluate_plain(&a, "public", z));
    }
}
