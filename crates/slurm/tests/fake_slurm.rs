//! The Slurm executor against fake `sbatch`/`squeue`/`scontrol`/`sacct`/`scancel` scripts in a
//! bin dir: resource mapping, idempotent start across executor instances, recovery of an
//! interrupted submission, state mapping, rejections, time limits, cancel and logs. Runs
//! everywhere; `real_slurm.rs` runs the same points against a real Slurm.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tidegate_exec::{ExecError, Executor as _, Launch, RunStatus};
use tidegate_model::{Backend, SlurmPlacement};
use tidegate_slurm::{Renderer, SlurmConfig, SlurmExecutor};

/// The sbatch scripts the control plane submits: the renderer `tidegate render` prints with.
fn render() -> Renderer {
    Arc::new(tidegate_render::slurm::script)
}

/// Fake Slurm: state in files beside the scripts. `queue` lines are `ID|COMMENT|STATE|EXIT|REASON`.
const SBATCH: &str = r#"#!/bin/sh
D=$(dirname "$0")
echo "$@" >>"$D/sbatch_calls"
case "$(cat "$D/sbatch_mode" 2>/dev/null)" in
  nocap) echo "sbatch: error: Batch job submission failed: Requested node configuration is not available" >&2; exit 1;;
  refuse) echo "sbatch: error: invalid partition specified: nope" >&2; echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2; exit 1;;
  hang) sleep 10; exit 0;;
esac
for a in "$@"; do script=$a; done
cp "$script" "$D/last_script"
n=$(( $(cat "$D/next" 2>/dev/null || echo 100) + 1 ))
echo $n >"$D/next"
c=$(sed -n 's/^#SBATCH --comment=//p' "$script")
echo "$n|$c|PENDING|0:0|None" >>"$D/queue"
echo $n
"#;

const SQUEUE: &str = r#"#!/bin/sh
D=$(dirname "$0")
echo "$@" >>"$D/squeue_calls"
[ -f "$D/queue" ] && cut -d'|' -f1,2 "$D/queue"
exit 0
"#;

const SCONTROL: &str = r#"#!/bin/sh
D=$(dirname "$0")
for a in "$@"; do id=$a; done
line=$(grep "^$id|" "$D/queue" 2>/dev/null | tail -n 1)
if [ -z "$line" ] || [ -f "$D/forgot_$id" ]; then echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; fi
st=$(echo "$line" | cut -d'|' -f3); ex=$(echo "$line" | cut -d'|' -f4); re=$(echo "$line" | cut -d'|' -f5)
c=$(echo "$line" | cut -d'|' -f2)
echo "JobId=$id JobName=x UserId=root(0) JobState=$st Reason=$re Dependency=(null) ExitCode=$ex Comment=$c StdOut=/tmp/o"
"#;

const SACCT: &str = r#"#!/bin/sh
D=$(dirname "$0")
cat "$D/sacct_rows" 2>/dev/null
exit 0
"#;

const SCANCEL: &str = r#"#!/bin/sh
D=$(dirname "$0")
for a in "$@"; do id=$a; done
echo "$id" >>"$D/scancel_calls"
sed -i "s/^$id|\([^|]*\)|[^|]*|/$id|\1|CANCELLED by 0|/" "$D/queue"
"#;

struct Fake {
    _tmp: tempfile::TempDir,
    bin: PathBuf,
    state: PathBuf,
}

impl Fake {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        fs::create_dir(&bin).unwrap();
        for (name, text) in [
            ("sbatch", SBATCH),
            ("squeue", SQUEUE),
            ("scontrol", SCONTROL),
            ("sacct", SACCT),
            ("scancel", SCANCEL),
        ] {
            let p = bin.join(name);
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let state = tmp.path().join("state");
        Self {
            _tmp: tmp,
            bin,
            state,
        }
    }

    fn config(&self) -> SlurmConfig {
        let mut c = SlurmConfig::new(&self.state, "gpu");
        c.bin_dir = Some(self.bin.clone());
        c.command_timeout = Duration::from_secs(5);
        c
    }

    fn exec(&self) -> SlurmExecutor {
        SlurmExecutor::new(self.config(), render()).unwrap()
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.bin.join(name)).unwrap_or_default()
    }

    fn write(&self, name: &str, text: &str) {
        fs::write(self.bin.join(name), text).unwrap();
    }

    fn set_state(&self, id: &str, state: &str, exit: &str, reason: &str) {
        let q = self.read("queue");
        let out: Vec<String> = q
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                if f[0] == id {
                    format!("{}|{}|{state}|{exit}|{reason}", f[0], f[1])
                } else {
                    l.to_owned()
                }
            })
            .collect();
        self.write("queue", &(out.join("\n") + "\n"));
    }

    fn sbatch_calls(&self) -> usize {
        self.read("sbatch_calls").lines().count()
    }
}

fn launch(id: &str) -> Launch {
    Launch {
        job_id: id.into(),
        name: "sepsis train".into(),
        team: "icu-ml".into(),
        zone: "hospital-onprem".into(),
        pool: "h100".into(),
        gpus: 2,
        gpu_type: "H100".into(),
        command: vec![
            "python".into(),
            "train.py".into(),
            "--msg".into(),
            "it's ok".into(),
        ],
        stand_in_seconds: 0.0,
        time_limit_s: 3725,
        env: vec![("EXTRA".into(), "a b".into())],
        labels: Default::default(),
    }
}

#[test]
fn submission_maps_resources_partition_account_and_environment() {
    let f = Fake::new();
    let backend = Backend::Slurm {
        partition: "gpu".into(),
        cluster: None,
        account: None,
    };
    let mut cfg = SlurmConfig::from_backend(&backend, &f.state).unwrap();
    cfg.bin_dir = Some(f.bin.clone());
    cfg.pool_partitions.insert("h100".into(), "burst".into());
    let ex = SlurmExecutor::new(cfg, render()).unwrap();
    assert!(ex.start(&launch("job-1")).unwrap());
    let script = f.read("last_script");
    let dir = f.state.join("job-1");
    for want in [
        "#SBATCH --job-name=sepsis_train".to_string(),
        "#SBATCH --comment=tidegate:job-1".into(),
        "#SBATCH --partition=burst".into(),
        "#SBATCH --account=icu-ml".into(),
        "#SBATCH --gres=gpu:h100:2".into(),
        "#SBATCH --time=0-01:02:05".into(),
        format!("#SBATCH --chdir={}", dir.display()),
        format!("#SBATCH --output={}/output.log", dir.display()),
        "#SBATCH --export=NONE".into(),
        "export TIDEGATE_JOB_ID=job-1".into(),
        "export TIDEGATE_ZONE=hospital-onprem".into(),
        "export TIDEGATE_POOL=h100".into(),
        "export TIDEGATE_GPUS=2".into(),
        "export TIDEGATE_GPU_TYPE=H100".into(),
        "export EXTRA='a b'".into(),
        r#"python train.py --msg 'it'\''s ok'"#.into(),
    ] {
        assert!(script.contains(&want), "script lacks {want:?}:\n{script}");
    }
    assert!(
        f.read("sbatch_calls").starts_with("--parsable "),
        "{}",
        f.read("sbatch_calls")
    );
    assert_eq!(ex.slurm_id("job-1").unwrap().as_deref(), Some("101"));
    // A zone account wins over the team.
    let mut cfg = f.config();
    cfg.account = Some("research".into());
    cfg.account_from_team = true;
    assert!(SlurmExecutor::new(cfg, render())
        .unwrap()
        .batch_script(&launch("job-2"))
        .unwrap()
        .contains("#SBATCH --account=research\n"));
}

#[test]
fn start_is_idempotent_within_and_across_executor_instances() {
    let f = Fake::new();
    let ex = f.exec();
    assert!(ex.start(&launch("job-1")).unwrap());
    assert!(
        !ex.start(&launch("job-1")).unwrap(),
        "second start submits nothing"
    );
    // Concurrent starts of one job: exactly one submits.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let ex = ex.clone();
            std::thread::spawn(move || ex.start(&launch("job-2")).unwrap())
        })
        .collect();
    let started = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|b| *b)
        .count();
    assert_eq!(started, 1);
    // A restarted control plane: a new executor on the same state dir.
    let again = f.exec();
    assert!(!again.start(&launch("job-1")).unwrap());
    assert_eq!(again.poll("job-1").unwrap(), RunStatus::Running);
    assert_eq!(f.sbatch_calls(), 2);
}

#[test]
fn an_interrupted_submission_is_found_by_its_comment_not_submitted_again() {
    let f = Fake::new();
    let ex = f.exec();
    assert!(ex.start(&launch("job-1")).unwrap());
    // Simulate a crash after sbatch accepted the job but before its id was recorded.
    let dir = f.state.join("job-1");
    fs::remove_file(dir.join("slurm_id")).unwrap();
    fs::write(dir.join("submitting"), b"").unwrap();
    let restarted = f.exec();
    assert!(!restarted.start(&launch("job-1")).unwrap());
    assert_eq!(f.sbatch_calls(), 1, "no second submission");
    assert_eq!(restarted.slurm_id("job-1").unwrap().as_deref(), Some("101"));
    assert!(
        f.read("squeue_calls").contains("--name=sepsis_train"),
        "{}",
        f.read("squeue_calls")
    );
    assert!(!dir.join("submitting").exists());
    // The crash happened before sbatch ran: nothing in Slurm, so the next start submits.
    let dir2 = f.state.join("job-2");
    fs::create_dir_all(&dir2).unwrap();
    fs::write(dir2.join("submitting"), b"").unwrap();
    assert!(matches!(
        restarted.poll("job-2").unwrap(),
        RunStatus::Lost { .. }
    ));
    assert!(restarted.start(&launch("job-2")).unwrap());
    assert_eq!(f.sbatch_calls(), 2);
    // A crash that lost both files (not yet on disk): the directory alone makes start ask Slurm.
    let dir2 = f.state.join("job-2");
    fs::remove_file(dir2.join("slurm_id")).unwrap();
    assert!(!restarted.start(&launch("job-2")).unwrap());
    assert_eq!(restarted.slurm_id("job-2").unwrap().as_deref(), Some("102"));
    assert_eq!(f.sbatch_calls(), 2);
}

#[test]
fn slurm_states_map_to_run_status() {
    let f = Fake::new();
    let ex = f.exec();
    assert_eq!(ex.poll("never").unwrap(), RunStatus::Unknown);
    for (i, (state, exit, reason, want)) in [
        ("PENDING", "0:0", "Resources", RunStatus::Running),
        ("RUNNING", "0:0", "None", RunStatus::Running),
        ("REQUEUED", "0:0", "None", RunStatus::Running),
        ("COMPLETED", "0:0", "None", RunStatus::Exited { code: 0 }),
        (
            "FAILED",
            "7:0",
            "NonZeroExitCode",
            RunStatus::Exited { code: 7 },
        ),
        (
            "TIMEOUT",
            "0:15",
            "TimeLimit",
            RunStatus::Exited { code: -15 },
        ),
        ("CANCELLED by 0", "0:15", "None", RunStatus::Cancelled),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("job-{i}");
        assert!(ex.start(&launch(&id)).unwrap());
        let sid = ex.slurm_id(&id).unwrap().unwrap();
        f.set_state(&sid, state, exit, reason);
        assert_eq!(ex.poll(&id).unwrap(), want, "state {state}");
    }
    assert!(ex.start(&launch("nf")).unwrap());
    let sid = ex.slurm_id("nf").unwrap().unwrap();
    f.set_state(&sid, "NODE_FAIL", "0:0", "NodeDown");
    match ex.poll("nf").unwrap() {
        RunStatus::Lost { reason } => assert!(
            reason.contains("node failed") && reason.contains("NodeDown"),
            "{reason}"
        ),
        other => panic!("NODE_FAIL gave {other:?}"),
    }
    // A final status is cached: Slurm is not asked again.
    f.set_state(&sid, "RUNNING", "0:0", "None");
    assert!(matches!(ex.poll("nf").unwrap(), RunStatus::Lost { .. }));
}

#[test]
fn a_job_slurm_forgot_is_read_from_sacct_then_from_its_exit_file() {
    let f = Fake::new();
    let ex = f.exec();
    assert!(ex.start(&launch("a")).unwrap());
    assert!(ex.start(&launch("b")).unwrap());
    let (a, b) = (
        ex.slurm_id("a").unwrap().unwrap(),
        ex.slurm_id("b").unwrap().unwrap(),
    );
    f.write(&format!("forgot_{a}"), "");
    f.write(&format!("forgot_{b}"), "");
    f.write("sacct_rows", &format!("{a}|FAILED|3:0\n"));
    assert_eq!(ex.poll("a").unwrap(), RunStatus::Exited { code: 3 });
    assert!(
        matches!(ex.poll("b").unwrap(), RunStatus::Lost { .. }),
        "no record anywhere: lost"
    );
    // (Lost is final and cached; a job with its own exit record reads that instead.)
    assert!(ex.start(&launch("c")).unwrap());
    let c = ex.slurm_id("c").unwrap().unwrap();
    f.write(&format!("forgot_{c}"), "");
    fs::write(f.state.join("c").join("exit"), "4\n").unwrap();
    assert_eq!(ex.poll("c").unwrap(), RunStatus::Exited { code: 4 });
}

#[test]
fn rejections_become_no_capacity_or_refused_and_allow_a_later_start() {
    let f = Fake::new();
    let ex = f.exec();
    f.write("sbatch_mode", "nocap");
    match ex.start(&launch("j")) {
        Err(ExecError::NoCapacity { reason, .. }) => assert!(
            reason.contains("Requested node configuration is not available"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    f.write("sbatch_mode", "refuse");
    match ex.start(&launch("j")) {
        Err(ExecError::Refused { reason, .. }) => {
            assert!(reason.contains("invalid partition"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ex.poll("j").unwrap(),
        RunStatus::Unknown,
        "a refused job was never started"
    );
    f.write("sbatch_mode", "ok");
    assert!(ex.start(&launch("j")).unwrap());
    // sbatch missing: an I/O error naming it.
    fs::remove_file(f.bin.join("sbatch")).unwrap();
    assert!(matches!(ex.start(&launch("k")), Err(ExecError::Io { .. })));
}

#[test]
fn a_hanging_sbatch_is_cut_off_and_the_submission_is_looked_up_next_time() {
    let f = Fake::new();
    let mut cfg = f.config();
    cfg.command_timeout = Duration::from_millis(300);
    let ex = SlurmExecutor::new(cfg, render()).unwrap();
    f.write("sbatch_mode", "hang");
    let t = std::time::Instant::now();
    assert!(matches!(
        ex.start(&launch("j")),
        Err(ExecError::NoCapacity { .. })
    ));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        f.state.join("j").join("submitting").exists(),
        "unsure: the marker stays"
    );
    // Slurm did take it after all.
    f.write("queue", "555|tidegate:j|RUNNING|0:0|None\n");
    f.write("sbatch_mode", "ok");
    assert!(!ex.start(&launch("j")).unwrap());
    assert_eq!(ex.slurm_id("j").unwrap().as_deref(), Some("555"));
    assert_eq!(f.sbatch_calls(), 1);
}

#[test]
fn cancel_and_logs() {
    let f = Fake::new();
    let ex = f.exec();
    assert!(!ex.cancel("nothing").unwrap());
    assert!(matches!(ex.logs("nothing", 10), Err(ExecError::Unknown(_))));
    assert!(ex.start(&launch("j")).unwrap());
    assert_eq!(ex.logs("j", 100).unwrap(), "");
    fs::write(f.state.join("j").join("output.log"), "line one\nline two\n").unwrap();
    assert_eq!(ex.logs("j", 9).unwrap(), "line two\n");
    assert!(ex.cancel("j").unwrap());
    assert_eq!(f.read("scancel_calls").trim(), "101");
    assert_eq!(ex.poll("j").unwrap(), RunStatus::Cancelled);
    assert!(!ex.cancel("j").unwrap(), "already ended");
}

#[test]
fn invalid_ids_and_state_dirs_are_refused() {
    let f = Fake::new();
    let ex = f.exec();
    assert!(matches!(
        ex.start(&launch("../x")),
        Err(ExecError::Invalid { .. })
    ));
    let mut cfg = f.config();
    cfg.state_dir = Path::new(&f.state).join("with space");
    let ex = SlurmExecutor::new(cfg, render()).unwrap();
    assert!(matches!(
        ex.start(&launch("j")),
        Err(ExecError::Invalid { .. })
    ));
    assert_eq!(f.sbatch_calls(), 0);
}

#[test]
fn rendered_slurm_script_is_what_the_executor_submits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fleet = tidegate_model::load_fleet(&root.join("examples/fleet")).unwrap();
    let jobs = tidegate_model::load_jobs_dir(&root.join("examples/jobs"), &fleet).unwrap();
    let job = jobs.iter().find(|j| j.name == "sepsis-train").unwrap();
    let zone = fleet.zone("hospital-onprem").unwrap();
    let f = Fake::new();
    let rendered =
        tidegate_render::slurm::batch_script(job, "sepsis-train", zone, None, &f.state).unwrap();
    let mut cfg = SlurmConfig::from_backend(&zone.backend, &f.state).unwrap();
    cfg.bin_dir = Some(f.bin.clone());
    let ex = SlurmExecutor::new(cfg, render()).unwrap();
    let pool = tidegate_render::pick_pool(job, zone, None).unwrap();
    let launch = tidegate_render::launch_for(job, "sepsis-train", zone, pool);
    assert_eq!(rendered, ex.batch_script(&launch).unwrap());
    assert!(ex.start(&launch).unwrap());
    assert_eq!(rendered, f.read("last_script"));
}

#[test]
fn a_script_without_the_tidegate_comment_is_never_submitted() {
    let f = Fake::new();
    let bare: Renderer =
        Arc::new(|_: &Launch, _: &SlurmPlacement, _: &Path| Ok("#!/bin/sh\ntrue\n".to_owned()));
    let ex = SlurmExecutor::new(f.config(), bare).unwrap();
    assert!(matches!(
        ex.start(&launch("j")),
        Err(ExecError::Invalid { .. })
    ));
    assert_eq!(f.sbatch_calls(), 0);
}
