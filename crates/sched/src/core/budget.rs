//! Burst budgets: the justification a burst records, and whether it would overspend its
//! class's or team's budget in money or GPU-hours.

use super::{Scheduler, Waiting};
use crate::reason::{BudgetLimit, BudgetOwner, QueueReason};

impl Scheduler {
    pub(super) fn justification(&self, w: &Waiting) -> Option<String> {
        w.shape
            .justification
            .clone()
            .filter(|j| !j.trim().is_empty())
            .or_else(|| self.teams.get(w.team).and_then(|t| t.justification.clone()))
    }

    /// Why a burst of `cost` and `gpu_hours` would exceed a budget, if it would.
    pub(super) fn over_budget(
        &self,
        w: &Waiting,
        cost: f64,
        gpu_hours: f64,
    ) -> Option<QueueReason> {
        let class = w.shape.class_name();
        let spent = self.class_spent.get(class).cloned().unwrap_or_default();
        let over =
            |owner: BudgetOwner, limit: BudgetLimit| QueueReason::OverBudget { owner, limit };
        if let Some(b) = self.rules.class(class).map(|c| c.budget) {
            if let Some(m) = b.money.filter(|m| spent.money + cost > *m) {
                return Some(over(
                    BudgetOwner::Class(class.to_string()),
                    BudgetLimit::Money(m),
                ));
            }
            if let Some(h) = b.gpu_hours.filter(|h| spent.gpu_hours + gpu_hours > *h) {
                return Some(over(
                    BudgetOwner::Class(class.to_string()),
                    BudgetLimit::GpuHours(h),
                ));
            }
        }
        let t = self.teams.get(w.team)?;
        let b = self.rules.team(&t.name)?.budget;
        if let Some(m) = b.money.filter(|m| t.spent.money + cost > *m) {
            return Some(over(
                BudgetOwner::Team(t.name.clone()),
                BudgetLimit::Money(m),
            ));
        }
        if let Some(h) = b.gpu_hours.filter(|h| t.spent.gpu_hours + gpu_hours > *h) {
            return Some(over(
                BudgetOwner::Team(t.name.clone()),
                BudgetLimit::GpuHours(h),
            ));
        }
        None
    }
}
