//! The scheduling part of `fleet.yaml` (teams and quotas, budgets, job classes, the failover
//! hierarchy) converted and checked against the fleet's zones.

use super::fleet::*;
use super::*;

pub(super) fn budget(
    file: &Arc<Path>,
    b: &BudgetFile,
    field: &str,
    errs: &mut Vec<LoadError>,
) -> Budget {
    let mut check = |v: &Option<Spanned<f64>>, name: &str| -> Option<f64> {
        let s = v.as_ref()?;
        if !(s.value >= 0.0 && s.value.is_finite()) {
            errs.push(LoadError::invalid(
                &origin_of(file, s),
                format!("{field}.{name}"),
                "must be a finite number >= 0",
            ));
        }
        Some(s.value)
    };
    Budget {
        money: check(&b.money, "money"),
        gpu_hours: check(&b.gpu_hours, "gpu_hours"),
    }
}

pub(super) fn scopes_hint(zones: &[Zone]) -> String {
    let mut names = vec![
        "private",
        "private-onprem",
        "private-cloud",
        "public",
        "edge",
    ];
    names.extend(zones.iter().map(|z| z.name.as_str()));
    names.join(", ")
}

pub(super) fn convert_scheduling(
    file: &Arc<Path>,
    teams: Vec<TeamFile>,
    classes: Vec<JobClassFile>,
    failover: FailoverFile,
    scheme: &Scheme,
    zones: &[Zone],
    errs: &mut Vec<LoadError>,
) -> Scheduling {
    let mut out = Scheduling::default();
    for (i, t) in teams.into_iter().enumerate() {
        let origin = origin_of(file, &t.name);
        check_name(&t.name.value, &origin, &format!("teams[{i}].name"), errs);
        if out.teams.iter().any(|x| x.name == t.name.value) {
            errs.push(LoadError::invalid(
                &origin,
                format!("teams[{i}].name"),
                format!("duplicate team `{}`", t.name.value),
            ));
            continue;
        }
        let weight = t.weight.as_ref().map_or(1.0, |w| w.value);
        if !(weight > 0.0 && weight.is_finite()) {
            let o = t
                .weight
                .as_ref()
                .map_or(origin.clone(), |w| origin_of(file, w));
            errs.push(LoadError::invalid(
                &o,
                format!("teams[{i}].weight"),
                "must be a number > 0",
            ));
        }
        for (scope, n) in &t.nominal {
            if !scope_known(scope, zones) {
                errs.push(LoadError::invalid(
                    &origin_of(file, n),
                    format!("teams[{i}].nominal.{scope}"),
                    format!(
                        "unknown scope `{scope}` (expected one of: {})",
                        scopes_hint(zones)
                    ),
                ));
            }
        }
        let b = budget(file, &t.budget, &format!("teams[{i}].budget"), errs);
        out.teams.push(TeamQuota {
            name: t.name.value,
            weight,
            nominal: t.nominal.into_iter().map(|(k, v)| (k, v.value)).collect(),
            borrowing_limit: t.borrowing_limit,
            justification: t.justification.filter(|j| !j.trim().is_empty()),
            budget: b,
            origin,
        });
    }
    for (i, c) in classes.into_iter().enumerate() {
        let origin = origin_of(file, &c.name);
        if out.classes.iter().any(|x| x.name == c.name.value) {
            errs.push(LoadError::invalid(
                &origin,
                format!("job_classes[{i}].name"),
                format!("duplicate job class `{}`", c.name.value),
            ));
            continue;
        }
        let mut minutes = |v: &Option<Spanned<f64>>, name: &str| -> Option<f64> {
            let s = v.as_ref()?;
            if !(s.value >= 0.0 && s.value.is_finite()) {
                errs.push(LoadError::invalid(
                    &origin_of(file, s),
                    format!("job_classes[{i}].{name}"),
                    "must be a finite number >= 0",
                ));
            }
            Some(s.value * 60.0)
        };
        let max_wait_s = minutes(&c.max_wait_minutes, "max_wait_minutes");
        let min_deadline_slack_s =
            minutes(&c.min_deadline_slack_minutes, "min_deadline_slack_minutes");
        let b = budget(file, &c.budget, &format!("job_classes[{i}].budget"), errs);
        out.classes.push(JobClass {
            name: c.name.value,
            burst_queue_depth: c.burst_queue_depth,
            max_wait_s,
            min_deadline_slack_s,
            budget: b,
            origin,
        });
    }
    let class_known = |name: &str, out: &Scheduling| name == "*" || out.class(name).is_some();
    let class_hint = |out: &Scheduling| {
        let mut n: Vec<&str> = out.classes.iter().map(|c| c.name.as_str()).collect();
        n.push("*");
        n.join(", ")
    };
    for (i, r) in failover.on_degraded.into_iter().enumerate() {
        let origin = origin_of(file, &r.classes);
        for c in &r.classes.value {
            if !class_known(c, &out) {
                errs.push(LoadError::invalid(
                    &origin,
                    format!("failover.on_degraded[{i}].classes"),
                    format!("unknown job class `{c}` (declared: {})", class_hint(&out)),
                ));
            }
        }
        for t in &r.to {
            if !scope_known(&t.value, zones) {
                errs.push(LoadError::invalid(
                    &origin_of(file, t),
                    format!("failover.on_degraded[{i}].to"),
                    format!(
                        "unknown scope `{}` (expected one of: {})",
                        t.value,
                        scopes_hint(zones)
                    ),
                ));
            }
        }
        if matches!(
            r.action,
            FailoverAction::FailOver | FailoverAction::Downsize
        ) && r.to.is_empty()
        {
            errs.push(LoadError::invalid(
                &origin,
                format!("failover.on_degraded[{i}].to"),
                "fail-over and downsize need at least one scope in `to`",
            ));
        }
        let max_classification =
            r.max_classification
                .as_ref()
                .map(|m| match scheme.level_rank(&m.value) {
                    Some(rank) => rank,
                    None => {
                        errs.push(LoadError::invalid(
                            &origin_of(file, m),
                            format!("failover.on_degraded[{i}].max_classification"),
                            format!(
                                "unknown classification level `{}` (known: {})",
                                m.value,
                                scheme.level_names().join(", ")
                            ),
                        ));
                        0 // fail closed: only the least sensitive data may move
                    }
                });
        out.failover.on_degraded.push(FailoverRule {
            classes: r.classes.value,
            action: r.action,
            to: r.to.into_iter().map(|t| t.value).collect(),
            max_classification,
            origin,
        });
    }
    for s in &failover.on_throttle.shed {
        if !class_known(&s.value, &out) {
            errs.push(LoadError::invalid(
                &origin_of(file, s),
                "failover.on_throttle.shed",
                format!(
                    "unknown job class `{}` (declared: {})",
                    s.value,
                    class_hint(&out)
                ),
            ));
        }
    }
    out.failover = Failover {
        throttle_shed: failover
            .on_throttle
            .shed
            .into_iter()
            .map(|s| s.value)
            .collect(),
        ..out.failover
    };
    out
}
