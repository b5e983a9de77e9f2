//! Typed reasons of the scheduler's effects: why a job bursts, waits, is refused, fails over or is
//! preempted. Each has a stable `code()` (what the store's event details and API programs match
//! on) and a sentence (`Display`, for people). Rewording a sentence never changes a code.

use std::fmt;

use serde::ser::{Serialize, SerializeStruct, Serializer};

/// Serialises a reason as `{"code", "text"}`.
macro_rules! code_and_text {
    ($t:ty, $name:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut st = s.serialize_struct($name, 2)?;
                st.serialize_field("code", self.code())?;
                st.serialize_field("text", &self.to_string())?;
                st.end()
            }
        }
    };
}

/// Why a job's site could not keep it.
#[derive(Debug, Clone, PartialEq)]
pub enum FailoverReason {
    /// The backend reported no capacity in the pool.
    NoCapacity {
        /// Zone name.
        zone: String,
        /// Pool name.
        pool: String,
    },
    /// The shell's policy re-check refused the job there.
    PolicyRecheck {
        /// The re-check's sentence.
        text: String,
    },
}

impl FailoverReason {
    /// The stable code (`failover:*`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoCapacity { .. } => "failover:no-capacity",
            Self::PolicyRecheck { .. } => "failover:policy-recheck",
        }
    }
}

impl fmt::Display for FailoverReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCapacity { zone, pool } => write!(f, "no capacity in {zone}/{pool}"),
            Self::PolicyRecheck { text } => write!(f, "policy re-check refused it: {text}"),
        }
    }
}

code_and_text!(FailoverReason, "FailoverReason");

/// Why a job was admitted to public capacity (or re-seated).
#[derive(Debug, Clone, PartialEq)]
pub enum BurstReason {
    /// No private zone may run it.
    OnlyPublic,
    /// Its home queue is at least the class's burst depth.
    QueueDepth {
        /// Its position in the home queue.
        depth: usize,
        /// The threshold.
        threshold: usize,
    },
    /// Its expected wait exceeds its SLA.
    WaitOverSla {
        /// Expected wait, seconds.
        expected_s: f64,
        /// The SLA, seconds.
        max_s: f64,
    },
    /// Its deadline slack is below the class minimum.
    DeadlineSlack {
        /// Slack, seconds.
        slack_s: f64,
        /// The class minimum, seconds.
        min_s: f64,
    },
    /// It was admitted once and moves on after a failover.
    Failover(FailoverReason),
    /// Its home zone is degraded and the failure hierarchy sends it elsewhere.
    Hierarchy {
        /// Home zone name.
        home: String,
        /// Job class.
        class: String,
        /// Downsized (otherwise failed over).
        downsized: bool,
        /// The scopes it may go to.
        to: Vec<String>,
    },
    /// Re-seated after a restart (no admission check).
    Restored,
}

impl BurstReason {
    /// The stable code (`burst:*`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::OnlyPublic => "burst:only-public",
            Self::QueueDepth { .. } => "burst:queue-depth",
            Self::WaitOverSla { .. } => "burst:wait-over-sla",
            Self::DeadlineSlack { .. } => "burst:deadline-slack",
            Self::Failover(_) => "burst:failover",
            Self::Hierarchy {
                downsized: false, ..
            } => "burst:hierarchy-fail-over",
            Self::Hierarchy {
                downsized: true, ..
            } => "burst:hierarchy-downsize",
            Self::Restored => "burst:restored",
        }
    }
}

impl fmt::Display for BurstReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OnlyPublic => {
                f.write_str("no private zone may run it; public capacity is its place")
            }
            Self::QueueDepth { depth, threshold } => {
                write!(f, "queue depth {depth} >= {threshold} in its home zone")
            }
            Self::WaitOverSla { expected_s, max_s } => write!(
                f,
                "expected wait {expected_s:.0} s exceeds the SLA of {max_s:.0} s"
            ),
            Self::DeadlineSlack { slack_s, min_s } => write!(
                f,
                "deadline slack {slack_s:.0} s is below the class minimum of {min_s:.0} s"
            ),
            Self::Failover(r) => write!(f, "failover: {r}"),
            Self::Hierarchy {
                home,
                class,
                downsized,
                to,
            } => {
                let verb = if *downsized {
                    "downsized to"
                } else {
                    "fails over to"
                };
                write!(
                    f,
                    "home zone `{home}` is degraded; class `{class}` {verb} {}",
                    to.join(", ")
                )
            }
            Self::Restored => f.write_str("restored"),
        }
    }
}

code_and_text!(BurstReason, "BurstReason");

/// Whose burst budget a burst would exceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetOwner {
    /// A job class.
    Class(String),
    /// A team.
    Team(String),
}

/// Which limit of a burst budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetLimit {
    /// Money.
    Money(f64),
    /// GPU-hours.
    GpuHours(f64),
}

/// Why a job waits in a queue.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueReason {
    /// Its team is at its quota plus borrowing limit in a zone.
    QuotaLimit {
        /// Team name.
        team: String,
        /// The borrowing limit (`None`: none).
        limit: Option<u32>,
        /// Zone name.
        zone: String,
    },
    /// A burst needs a business justification and there is none.
    NeedsJustification {
        /// Team name.
        team: String,
    },
    /// A burst would exceed a budget.
    OverBudget {
        /// Whose budget.
        owner: BudgetOwner,
        /// Which limit, and its value.
        limit: BudgetLimit,
    },
    /// All the public capacity it needs is throttled.
    Throttled,
    /// Private pools are full and there is no pressure to burst yet.
    PrivatePoolsFull,
    /// Every allowed pool is full (no public option).
    AllowedPoolsFull,
    /// Its home zone is degraded and its class waits for it.
    DegradedWaits {
        /// Home zone name.
        home: String,
        /// Job class.
        class: String,
    },
    /// Its home zone is degraded and it cannot be downsized.
    DegradedCannotDownsize {
        /// Home zone name.
        home: String,
    },
    /// Its home zone is degraded and its data is classified above what may fail over.
    DegradedClassified {
        /// Home zone name.
        home: String,
    },
    /// Back in the queue: its borrowed GPUs were reclaimed.
    Reclaimed,
    /// Back in the queue: the backend evicted it.
    Evicted {
        /// The backend's sentence.
        text: String,
    },
    /// It failed over and waits for its next option.
    AwaitingFailover(FailoverReason),
}

impl QueueReason {
    /// The stable code (`queue:*`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::QuotaLimit { .. } => "queue:quota-limit",
            Self::NeedsJustification { .. } => "queue:needs-justification",
            Self::OverBudget { owner, limit } => match (owner, limit) {
                (BudgetOwner::Class(_), BudgetLimit::Money(_)) => "queue:class-budget-money",
                (BudgetOwner::Class(_), BudgetLimit::GpuHours(_)) => "queue:class-budget-gpu-hours",
                (BudgetOwner::Team(_), BudgetLimit::Money(_)) => "queue:team-budget-money",
                (BudgetOwner::Team(_), BudgetLimit::GpuHours(_)) => "queue:team-budget-gpu-hours",
            },
            Self::Throttled => "queue:throttled",
            Self::PrivatePoolsFull => "queue:private-pools-full",
            Self::AllowedPoolsFull => "queue:allowed-pools-full",
            Self::DegradedWaits { .. } => "queue:degraded-waits",
            Self::DegradedCannotDownsize { .. } => "queue:degraded-cannot-downsize",
            Self::DegradedClassified { .. } => "queue:degraded-classified",
            Self::Reclaimed => "queue:preempted-reclaimed",
            Self::Evicted { .. } => "queue:preempted-evicted",
            Self::AwaitingFailover(_) => "queue:awaiting-failover",
        }
    }
}

impl fmt::Display for QueueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QuotaLimit { team, limit, zone } => {
                write!(f, "team `{team}` is at its quota plus borrowing limit (")?;
                match limit {
                    Some(l) => write!(f, "{l}")?,
                    None => f.write_str("none")?,
                }
                write!(f, ") in `{zone}`")
            }
            Self::NeedsJustification { team } => write!(
                f,
                "a burst needs a business justification; the job gives none and team `{team}` has no standing one"
            ),
            Self::OverBudget { owner, limit } => {
                f.write_str("burst would exceed ")?;
                match owner {
                    BudgetOwner::Class(c) => write!(f, "class `{c}` budget: ")?,
                    BudgetOwner::Team(t) => write!(f, "team `{t}` budget: ")?,
                }
                match limit {
                    BudgetLimit::Money(m) => write!(f, "{m:.2} money"),
                    BudgetLimit::GpuHours(h) => write!(f, "{h:.1} GPU-hours"),
                }
            }
            Self::Throttled => f.write_str("the public capacity it needs is throttled"),
            Self::PrivatePoolsFull => f.write_str("private pools are full; no public pressure yet"),
            Self::AllowedPoolsFull => f.write_str("allowed pools are full"),
            Self::DegradedWaits { home, class } => write!(
                f,
                "home zone `{home}` is degraded; class `{class}` waits for it"
            ),
            Self::DegradedCannotDownsize { home } => write!(
                f,
                "home zone `{home}` is degraded; the job cannot be downsized, so it waits"
            ),
            Self::DegradedClassified { home } => write!(
                f,
                "home zone `{home}` is degraded; the job's data is classified above what may fail over, so it waits"
            ),
            Self::Reclaimed => f.write_str("preempted: its borrowed GPUs were reclaimed"),
            Self::Evicted { text } => write!(f, "preempted: {text}"),
            Self::AwaitingFailover(r) => {
                write!(f, "failover: waiting for its next option ({r})")
            }
        }
    }
}

code_and_text!(QueueReason, "QueueReason");

/// Why a job can never run anywhere it is allowed, or was shed.
#[derive(Debug, Clone, PartialEq)]
pub enum RefuseReason {
    /// No zone and pool is allowed for it.
    NoAllowedOption,
    /// It needs more GPUs than the largest allowed pool has.
    TooLarge {
        /// GPUs it needs.
        gpus: u32,
        /// GPUs of the largest allowed pool.
        largest: u32,
    },
    /// The policy re-check struck off its last queued option.
    RecheckRefused {
        /// The re-check's sentence.
        text: String,
    },
    /// It failed over from its last option.
    NoOptionLeft {
        /// Failovers so far.
        attempts: u32,
        /// Why the last one happened.
        last: FailoverReason,
    },
    /// Its home zone is degraded and the failure hierarchy sheds its class.
    DegradedShed {
        /// Home zone name.
        home: String,
        /// Job class.
        class: String,
    },
    /// The public capacity it needs is throttled and its class is shed first.
    ThrottledShed,
    /// Placement allows it nowhere (the caller's sentence).
    NotPlaced {
        /// The sentence.
        text: String,
    },
}

impl RefuseReason {
    /// The stable code (`refused:*`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoAllowedOption => "refused:no-allowed-option",
            Self::TooLarge { .. } => "refused:too-large",
            Self::RecheckRefused { .. } => "refused:recheck-refused",
            Self::NoOptionLeft { .. } => "refused:no-option-left",
            Self::DegradedShed { .. } => "refused:degraded-shed",
            Self::ThrottledShed => "refused:throttled-shed",
            Self::NotPlaced { .. } => "refused:not-placed",
        }
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAllowedOption => f.write_str("no zone and pool is allowed for this job"),
            Self::TooLarge { gpus, largest } => {
                write!(
                    f,
                    "needs {gpus} GPUs; the largest allowed pool has {largest}"
                )
            }
            Self::RecheckRefused { text } => write!(f, "no allowed option left: {text}"),
            Self::NoOptionLeft { attempts, last } => write!(
                f,
                "no allowed option left after {attempts} attempts ({last})"
            ),
            Self::DegradedShed { home, class } => {
                write!(f, "home zone `{home}` is degraded; class `{class}` is shed")
            }
            Self::ThrottledShed => {
                f.write_str("the public capacity it needs is throttled; its class is shed first")
            }
            Self::NotPlaced { text } => f.write_str(text),
        }
    }
}

code_and_text!(RefuseReason, "RefuseReason");

/// Why a running job was stopped for other work.
#[derive(Debug, Clone, PartialEq)]
pub enum PreemptReason {
    /// A team reclaims the quota it lent to this borrowed job.
    Reclaimed {
        /// The reclaiming team.
        team: String,
    },
    /// The backend evicted it.
    Evicted {
        /// The backend's sentence.
        text: String,
    },
}

impl PreemptReason {
    /// The stable code (`preempted:*`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Reclaimed { .. } => "preempted:reclaimed",
            Self::Evicted { .. } => "preempted:evicted",
        }
    }
}

impl fmt::Display for PreemptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reclaimed { team } => {
                write!(
                    f,
                    "team `{team}` reclaims its quota lent to this borrowed job"
                )
            }
            Self::Evicted { text } => f.write_str(text),
        }
    }
}

code_and_text!(PreemptReason, "PreemptReason");

#[cfg(test)]
mod tests {
    use super::*;

    fn fo() -> FailoverReason {
        FailoverReason::NoCapacity {
            zone: "us-east".into(),
            pool: "h200-od".into(),
        }
    }

    #[test]
    fn codes_are_distinct_and_stable() {
        let s = String::new;
        let table: Vec<(&str, &str)> = vec![
            (fo().code(), "failover:no-capacity"),
            (
                FailoverReason::PolicyRecheck { text: s() }.code(),
                "failover:policy-recheck",
            ),
            (BurstReason::OnlyPublic.code(), "burst:only-public"),
            (
                BurstReason::QueueDepth {
                    depth: 0,
                    threshold: 0,
                }
                .code(),
                "burst:queue-depth",
            ),
            (
                BurstReason::WaitOverSla {
                    expected_s: 0.0,
                    max_s: 0.0,
                }
                .code(),
                "burst:wait-over-sla",
            ),
            (
                BurstReason::DeadlineSlack {
                    slack_s: 0.0,
                    min_s: 0.0,
                }
                .code(),
                "burst:deadline-slack",
            ),
            (BurstReason::Failover(fo()).code(), "burst:failover"),
            (
                BurstReason::Hierarchy {
                    home: s(),
                    class: s(),
                    downsized: false,
                    to: vec![],
                }
                .code(),
                "burst:hierarchy-fail-over",
            ),
            (
                BurstReason::Hierarchy {
                    home: s(),
                    class: s(),
                    downsized: true,
                    to: vec![],
                }
                .code(),
                "burst:hierarchy-downsize",
            ),
            (BurstReason::Restored.code(), "burst:restored"),
            (
                QueueReason::QuotaLimit {
                    team: s(),
                    limit: None,
                    zone: s(),
                }
                .code(),
                "queue:quota-limit",
            ),
            (
                QueueReason::NeedsJustification { team: s() }.code(),
                "queue:needs-justification",
            ),
            (
                QueueReason::OverBudget {
                    owner: BudgetOwner::Class(s()),
                    limit: BudgetLimit::Money(0.0),
                }
                .code(),
                "queue:class-budget-money",
            ),
            (
                QueueReason::OverBudget {
                    owner: BudgetOwner::Class(s()),
                    limit: BudgetLimit::GpuHours(0.0),
                }
                .code(),
                "queue:class-budget-gpu-hours",
            ),
            (
                QueueReason::OverBudget {
                    owner: BudgetOwner::Team(s()),
                    limit: BudgetLimit::Money(0.0),
                }
                .code(),
                "queue:team-budget-money",
            ),
            (
                QueueReason::OverBudget {
                    owner: BudgetOwner::Team(s()),
                    limit: BudgetLimit::GpuHours(0.0),
                }
                .code(),
                "queue:team-budget-gpu-hours",
            ),
            (QueueReason::Throttled.code(), "queue:throttled"),
            (
                QueueReason::PrivatePoolsFull.code(),
                "queue:private-pools-full",
            ),
            (
                QueueReason::AllowedPoolsFull.code(),
                "queue:allowed-pools-full",
            ),
            (
                QueueReason::DegradedWaits {
                    home: s(),
                    class: s(),
                }
                .code(),
                "queue:degraded-waits",
            ),
            (
                QueueReason::DegradedCannotDownsize { home: s() }.code(),
                "queue:degraded-cannot-downsize",
            ),
            (
                QueueReason::DegradedClassified { home: s() }.code(),
                "queue:degraded-classified",
            ),
            (QueueReason::Reclaimed.code(), "queue:preempted-reclaimed"),
            (
                QueueReason::Evicted { text: s() }.code(),
                "queue:preempted-evicted",
            ),
            (
                QueueReason::AwaitingFailover(fo()).code(),
                "queue:awaiting-failover",
            ),
            (
                RefuseReason::NoAllowedOption.code(),
                "refused:no-allowed-option",
            ),
            (
                RefuseReason::TooLarge {
                    gpus: 0,
                    largest: 0,
                }
                .code(),
                "refused:too-large",
            ),
            (
                RefuseReason::RecheckRefused { text: s() }.code(),
                "refused:recheck-refused",
            ),
            (
                RefuseReason::NoOptionLeft {
                    attempts: 1,
                    last: fo(),
                }
                .code(),
                "refused:no-option-left",
            ),
            (
                RefuseReason::DegradedShed {
                    home: s(),
                    class: s(),
                }
                .code(),
                "refused:degraded-shed",
            ),
            (RefuseReason::ThrottledShed.code(), "refused:throttled-shed"),
            (
                RefuseReason::NotPlaced { text: s() }.code(),
                "refused:not-placed",
            ),
            (
                PreemptReason::Reclaimed { team: s() }.code(),
                "preempted:reclaimed",
            ),
            (
                PreemptReason::Evicted { text: s() }.code(),
                "preempted:evicted",
            ),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (got, want) in &table {
            assert_eq!(got, want);
            assert!(seen.insert(*got), "duplicate code {got}");
        }
    }

    #[test]
    fn sentences_are_the_ones_shown_before() {
        let cases: Vec<(String, &str)> = vec![
            (
                BurstReason::QueueDepth {
                    depth: 2,
                    threshold: 2,
                }
                .to_string(),
                "queue depth 2 >= 2 in its home zone",
            ),
            (
                BurstReason::WaitOverSla {
                    expected_s: 7200.4,
                    max_s: 3600.0,
                }
                .to_string(),
                "expected wait 7200 s exceeds the SLA of 3600 s",
            ),
            (
                BurstReason::Failover(fo()).to_string(),
                "failover: no capacity in us-east/h200-od",
            ),
            (
                BurstReason::Hierarchy {
                    home: "onprem".into(),
                    class: "production".into(),
                    downsized: false,
                    to: vec!["public".into(), "edge".into()],
                }
                .to_string(),
                "home zone `onprem` is degraded; class `production` fails over to public, edge",
            ),
            (
                QueueReason::QuotaLimit {
                    team: "a".into(),
                    limit: Some(16),
                    zone: "onprem".into(),
                }
                .to_string(),
                "team `a` is at its quota plus borrowing limit (16) in `onprem`",
            ),
            (
                QueueReason::QuotaLimit {
                    team: "a".into(),
                    limit: None,
                    zone: "onprem".into(),
                }
                .to_string(),
                "team `a` is at its quota plus borrowing limit (none) in `onprem`",
            ),
            (
                QueueReason::OverBudget {
                    owner: BudgetOwner::Class("batch".into()),
                    limit: BudgetLimit::Money(10.0),
                }
                .to_string(),
                "burst would exceed class `batch` budget: 10.00 money",
            ),
            (
                QueueReason::OverBudget {
                    owner: BudgetOwner::Team("ml".into()),
                    limit: BudgetLimit::GpuHours(2.0),
                }
                .to_string(),
                "burst would exceed team `ml` budget: 2.0 GPU-hours",
            ),
            (
                QueueReason::AwaitingFailover(FailoverReason::PolicyRecheck {
                    text: "policy changed".into(),
                })
                .to_string(),
                "failover: waiting for its next option (policy re-check refused it: policy changed)",
            ),
            (
                QueueReason::Evicted {
                    text: "Kueue evicted it".into(),
                }
                .to_string(),
                "preempted: Kueue evicted it",
            ),
            (
                RefuseReason::NoOptionLeft {
                    attempts: 2,
                    last: fo(),
                }
                .to_string(),
                "no allowed option left after 2 attempts (no capacity in us-east/h200-od)",
            ),
            (
                RefuseReason::TooLarge {
                    gpus: 500,
                    largest: 256,
                }
                .to_string(),
                "needs 500 GPUs; the largest allowed pool has 256",
            ),
            (
                PreemptReason::Reclaimed { team: "rad".into() }.to_string(),
                "team `rad` reclaims its quota lent to this borrowed job",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
