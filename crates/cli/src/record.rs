//! Recording placement decisions in the evidence ledger (`plan --record`): the fleet and policy
//! set loaded, each job submitted and where it was placed (or why it was refused), with the policy
//! document stored by its hash so an evidence bundle carries the exact rules that decided.

use std::path::Path;

use miette::miette;
use tidegate_ledger::ledger::put_document;
use tidegate_ledger::{
    Action, Decision, Digest, EntryDraft, Ident, Ledger, LedgerOptions, Subject, SubjectKind,
};
use tidegate_model::{Fleet, Input, JobSpec};
use tidegate_placement::Placement;
use tidegate_policy::PolicyEngine;

const ACTOR: &str = "tidegate-plan";

fn now_ms() -> u64 {
    tidegate_vocab::Timestamp::now().unix_millis()
}

fn ident(s: &str) -> miette::Result<Ident> {
    Ident::new(s).map_err(|e| miette!("`{s}` cannot be recorded as an identifier: {e}"))
}

fn digest(hex: &str) -> miette::Result<Digest> {
    Digest::from_hex(hex).map_err(|e| miette!("bad digest: {e}"))
}

fn subject(kind: SubjectKind, id: &str) -> miette::Result<Subject> {
    Subject::new(kind, id).map_err(|e| miette!("`{id}` cannot be recorded as a subject: {e}"))
}

/// Appends the fleet, the policy set and every job's submission and placement to the ledger in
/// `data_dir`, then publishes a signed checkpoint. Each entry is durable before this returns.
pub fn record_plan(
    data_dir: &Path,
    fleet: &Fleet,
    policy: &PolicyEngine,
    placed: &[(&JobSpec, Placement)],
) -> miette::Result<usize> {
    let ledger = Ledger::open(data_dir, LedgerOptions::default()).map_err(|e| {
        miette!(
            help = "nothing was recorded",
            "cannot open the ledger in {}: {e}",
            data_dir.display()
        )
    })?;
    let doc = put_document(data_dir, policy.document()).map_err(|e| {
        miette!(
            "cannot store the policy document in {}: {e}",
            data_dir.display()
        )
    })?;
    let policy_hash = digest(policy.hash())?;
    if doc != policy_hash {
        return Err(miette!(
            "the policy document does not hash to the policy hash; nothing recorded"
        ));
    }
    let actor = ident(ACTOR)?;
    let append = |action: Action, subjects: Vec<Subject>| -> miette::Result<()> {
        let draft = EntryDraft::new(actor.clone(), action, subjects).map_err(|e| miette!("{e}"))?;
        ledger.append(draft, now_ms()).map_err(|e| {
            miette!(
                help = "the ledger refuses further writes; nothing after this was recorded",
                "{e}"
            )
        })?;
        Ok(())
    };
    append(
        Action::FleetLoaded {
            fleet_hash: digest(&fleet.fleet_hash)?,
        },
        vec![subject(SubjectKind::Fleet, &fleet.name)?],
    )?;
    append(
        Action::PolicyLoaded {
            policy_hash: policy_hash.clone(),
        },
        vec![subject(SubjectKind::Policy, "placement")?],
    )?;
    let mut n = 2;
    for (job, p) in placed {
        let spec =
            serde_json::to_vec(job).map_err(|e| miette!("cannot encode job {}: {e}", job.name))?;
        let mut subjects = vec![subject(SubjectKind::Job, &job.name)?];
        for input in &job.inputs {
            match input {
                Input::Dataset(d) => subjects.push(subject(SubjectKind::Dataset, &d.to_string())?),
                Input::Artifact(a) => subjects.push(subject(SubjectKind::Artifact, a)?),
            }
        }
        // Every subject is recorded, or nothing is: never a silent cut.
        if subjects.len() > tidegate_ledger::entry::MAX_SUBJECTS - 1 {
            return Err(miette!(
                "job {} names {} inputs; its evidence entries can name at most {}",
                job.name,
                subjects.len() - 1,
                tidegate_ledger::entry::MAX_SUBJECTS - 2
            ));
        }
        append(
            Action::JobSubmitted {
                spec: Digest::of(&spec),
            },
            subjects.clone(),
        )?;
        let (decision, zone, pool) = match p.decided(fleet) {
            Some((zone, pool)) => (Decision::Allowed, zone, pool),
            None => (Decision::Refused, "none", "none"),
        };
        if decision == Decision::Allowed {
            subjects.push(subject(SubjectKind::Zone, zone)?);
        }
        let reasons = p
            .reason_codes(tidegate_ledger::entry::MAX_LIST)
            .iter()
            .map(|r| ident(r))
            .collect::<miette::Result<Vec<_>>>()?;
        append(
            Action::JobPlaced {
                decision,
                zone: ident(zone)?,
                pool: ident(pool)?,
                reasons,
                policy_hash: policy_hash.clone(),
            },
            subjects,
        )?;
        n += 2;
    }
    ledger
        .publish_checkpoint()
        .map_err(|e| miette!("cannot publish a checkpoint: {e}"))?;
    ledger
        .close()
        .map_err(|e| miette!("cannot close the ledger: {e}"))?;
    Ok(n)
}
