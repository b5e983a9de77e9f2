//! Scheduling rules a fleet declares in `fleet.yaml`: team quotas (nominal GPUs per zone or tier,
//! a borrowing limit, a fair-share weight, a standing business justification and a budget), job
//! classes (burst thresholds and budgets per class) and the failure hierarchy (what each class does
//! when its private zone is degraded, and which classes are shed when a public provider throttles).
//! Every section is optional: a fleet without them schedules as before.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Origin, Tier, Zone};

/// A spending limit in money (the fleet's currency) and GPU-hours; `None` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Budget {
    /// Money.
    pub money: Option<f64>,
    /// GPU-hours.
    pub gpu_hours: Option<f64>,
}

/// A team's quota, in the manner of Kueue cohorts / Run:ai projects.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamQuota {
    /// Team name (a job's `metadata.team`).
    pub name: String,
    /// Fair-share weight (> 0): a team with twice the weight is entitled to twice the recent usage.
    pub weight: f64,
    /// Nominal GPUs per scope: a zone name, a tier (`private-onprem`, `private-cloud`, `public`,
    /// `edge`) or `private` (both private tiers). A zone entry wins over a tier entry.
    pub nominal: BTreeMap<String, u32>,
    /// GPUs the team may use beyond its nominal quota in a scope, borrowed from other teams'
    /// unused quota (`None` = no limit, `Some(0)` = no borrowing).
    pub borrowing_limit: Option<u32>,
    /// Standing business justification recorded with the team's bursts when a job gives none.
    pub justification: Option<String>,
    /// The team's budget for bursts to public capacity.
    pub budget: Budget,
    /// Where the team was declared.
    #[serde(skip)]
    pub origin: Origin,
}

impl TeamQuota {
    /// The scope key of this team's quota that covers `zone`, if any (zone name, then tier, then
    /// `private` for the private tiers).
    pub fn scope_for(&self, zone: &Zone) -> Option<&str> {
        if let Some((k, _)) = self.nominal.get_key_value(zone.name.as_str()) {
            return Some(k);
        }
        if let Some((k, _)) = self.nominal.get_key_value(zone.tier.as_str()) {
            return Some(k);
        }
        if zone.tier.is_private() {
            return self
                .nominal
                .get_key_value("private")
                .map(|(k, _)| k.as_str());
        }
        None
    }
}

/// Thresholds and budget of one job class (a job's `spec.budget_class`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobClass {
    /// Class name.
    pub name: String,
    /// Burst when the home queue holds at least this many jobs (default: the scheduler's).
    pub burst_queue_depth: Option<usize>,
    /// Default SLA for jobs of the class that give none, seconds.
    pub max_wait_s: Option<f64>,
    /// Burst when deadline slack (time left minus expected run time and queue ahead) falls below
    /// this, seconds (default 0).
    pub min_deadline_slack_s: Option<f64>,
    /// Budget for the class's bursts.
    pub budget: Budget,
    /// Where the class was declared.
    #[serde(skip)]
    pub origin: Origin,
}

/// What a job class does when its home (private) zone is not healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverAction {
    /// Run at once at its allowed options within the rule's `to` scopes.
    FailOver,
    /// Wait for the home zone.
    Wait,
    /// Refuse the job (it is shed).
    Shed,
    /// Run with fewer GPUs (the job's minimum) within the rule's `to` scopes, or wait if the job
    /// cannot shrink.
    Downsize,
}

/// One rule of the failure hierarchy; the first rule naming a job's class (or `*`) applies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailoverRule {
    /// Job classes (`*` = any).
    pub classes: Vec<String>,
    /// What to do.
    pub action: FailoverAction,
    /// Scopes it may move to (zone names, tiers or `private`); policy still bounds each job's
    /// options, so restricted data never reaches public capacity whatever this says.
    pub to: Vec<String>,
    /// Only jobs whose data is classified at or below this rank may move; others wait.
    pub max_classification: Option<u8>,
    /// Where the rule was declared.
    #[serde(skip)]
    pub origin: Origin,
}

impl FailoverRule {
    /// Whether the rule covers a job class.
    pub fn covers(&self, class: &str) -> bool {
        self.classes.iter().any(|c| c == "*" || c == class)
    }
}

/// The failure hierarchy.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Failover {
    /// Rules for a degraded or unreachable private zone, first match wins.
    pub on_degraded: Vec<FailoverRule>,
    /// Job classes shed (refused) when the public capacity they depend on is throttled; the rest
    /// queue.
    pub throttle_shed: Vec<String>,
}

/// Everything the scheduler takes from the fleet besides zones and pools.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Scheduling {
    /// Team quotas (none: no quotas).
    pub teams: Vec<TeamQuota>,
    /// Job classes (none: default thresholds, no class budgets).
    pub classes: Vec<JobClass>,
    /// Failure hierarchy.
    pub failover: Failover,
}

impl Scheduling {
    /// A team's quota by name.
    pub fn team(&self, name: &str) -> Option<&TeamQuota> {
        self.teams.iter().find(|t| t.name == name)
    }

    /// A job class by name.
    pub fn class(&self, name: &str) -> Option<&JobClass> {
        self.classes.iter().find(|c| c.name == name)
    }
}

/// Whether `scope` (a zone name, a tier name or `private`) covers `zone`.
pub fn scope_covers(scope: &str, zone: &Zone) -> bool {
    scope == zone.name
        || scope == zone.tier.as_str()
        || (scope == "private" && zone.tier.is_private())
        || scope == "*"
}

/// Whether `scope` names something in a fleet with these zones.
pub(crate) fn scope_known(scope: &str, zones: &[Zone]) -> bool {
    const TIERS: [Tier; 4] = [
        Tier::PrivateOnprem,
        Tier::PrivateCloud,
        Tier::Public,
        Tier::Edge,
    ];
    scope == "private"
        || TIERS.iter().any(|t| t.as_str() == scope)
        || zones.iter().any(|z| z.name == scope)
}
