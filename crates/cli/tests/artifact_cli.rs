//! End-to-end runs of the `tidegate` binary on a data directory: artifact, token and lineage
//! commands, offline, with tampering, refusals, rotation and revocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

const T0: u64 = 1_800_000_000;

fn tg(dir: &Path, now: u64, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .env("TIDEGATE_DATA_DIR", dir)
        .env("TIDEGATE_NOW", now.to_string())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(dir: &Path, now: u64, args: &[&str]) -> String {
    let out = tg(dir, now, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(dir: &Path, now: u64, args: &[&str]) -> String {
    let out = tg(dir, now, args);
    assert!(!out.status.success(), "{args:?} should have been refused");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn put_sign_get_verify_tamper_promote_rotate_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = dir.join("model.bin");
    std::fs::write(&model, b"weights of a fraud model").unwrap();
    let m = model.to_str().unwrap();

    let digest = ok(dir, T0, &["artifact", "put", m, "--kind", "model"])
        .trim()
        .to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    // A model without signed provenance is not handed out.
    let out_path = dir.join("out.bin");
    let o = out_path.to_str().unwrap();
    assert!(refused(dir, T0, &["artifact", "get", &digest, "-o", o])
        .contains("no signed SLSA provenance"));

    ok(
        dir,
        T0,
        &["artifact", "key", "init", "--owner", "zone:onprem-a"],
    );
    ok(
        dir,
        T0 + 10,
        &[
            "artifact",
            "sign",
            &digest,
            "--job",
            "job-42",
            "--zone",
            "onprem-a",
            "--repo",
            "https://git.example.org/ml/fraud",
            "--commit",
            "3f2a9c1d0b7e6f5a4c3b2a1908f7e6d5c4b3a291",
            "--input",
            "dataset:claims@v3",
            "--param",
            "lr=0.001",
            "--param",
            "epochs=3",
        ],
    );
    ok(dir, T0 + 20, &["artifact", "get", &digest, "-o", o]);
    assert_eq!(
        std::fs::read(&out_path).unwrap(),
        b"weights of a fraud model"
    );
    assert!(ok(dir, T0 + 20, &["artifact", "verify", &digest]).starts_with("ok "));
    let list = ok(dir, T0 + 20, &["artifact", "list"]);
    assert!(
        list.contains(&digest) && list.contains("candidate"),
        "{list}"
    );

    // Promotion without evidence names what is missing.
    let msg = refused(
        dir,
        T0 + 30,
        &["artifact", "promote", &digest, "--to", "validated"],
    );
    assert!(
        msg.contains("data approval") && msg.contains("validation report"),
        "{msg}"
    );

    // Evidence, then promotion.
    let approver = ok(
        dir,
        T0 + 30,
        &["artifact", "key", "add-approver", "--owner", "alice"],
    )
    .trim()
    .to_string();
    ok(
        dir,
        T0 + 31,
        &[
            "artifact",
            "attest",
            &digest,
            "--type",
            "data-approval",
            "--field",
            "dataset=claims@v3",
            "--key",
            &approver,
        ],
    );
    ok(
        dir,
        T0 + 31,
        &[
            "artifact",
            "attest",
            &digest,
            "--type",
            "feature-pin",
            "--field",
            "featureSet=claims",
            "--field",
            "version=7",
        ],
    );
    ok(
        dir,
        T0 + 31,
        &[
            "artifact",
            "attest",
            &digest,
            "--type",
            "validation-report",
            "--field",
            "metric=auc",
            "--field",
            "value=0.93",
            "--field",
            "testSet=claims@v3-test",
        ],
    );
    let promoted = ok(
        dir,
        T0 + 40,
        &["artifact", "promote", &digest, "--to", "validated"],
    );
    assert!(promoted.contains("candidate -> validated"), "{promoted}");
    let msg = refused(
        dir,
        T0 + 41,
        &["artifact", "deploy", &digest, "--as", "fraud-eu"],
    );
    assert!(msg.contains("not in a release stage"), "{msg}");
    // Approval evidence, approval, private release, then the deployment is recorded.
    ok(
        dir,
        T0 + 42,
        &[
            "artifact",
            "attest",
            &digest,
            "--type",
            "model-card",
            "--field",
            "modelCard=sha256:00",
        ],
    );
    ok(
        dir,
        T0 + 42,
        &[
            "artifact",
            "attest",
            &digest,
            "--type",
            "security-review",
            "--field",
            "reviewer=alice",
            "--field",
            "verdict=approved",
            "--key",
            &approver,
        ],
    );
    ok(
        dir,
        T0 + 43,
        &["artifact", "promote", &digest, "--to", "approved"],
    );
    ok(
        dir,
        T0 + 44,
        &["artifact", "promote", &digest, "--to", "released-private"],
    );
    ok(
        dir,
        T0 + 45,
        &["artifact", "deploy", &digest, "--as", "fraud-eu"],
    );
    // An edge site takes only released-edge artifacts; the edge deployment is ledgered.
    let msg = refused(
        dir,
        T0 + 46,
        &[
            "artifact",
            "deploy",
            &digest,
            "--as",
            "clinic-1",
            "--edge-site",
            "edge-clinic",
        ],
    );
    assert!(
        msg.contains("only released-edge artifacts go to edge sites"),
        "{msg}"
    );
    ok(
        dir,
        T0 + 47,
        &["artifact", "promote", &digest, "--to", "released-edge"],
    );
    ok(
        dir,
        T0 + 48,
        &[
            "artifact",
            "deploy",
            &digest,
            "--as",
            "clinic-1",
            "--edge-site",
            "edge-clinic",
        ],
    );
    let mut ledger = Vec::new();
    for e in std::fs::read_dir(dir.join("ledger")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            ledger.extend(std::fs::read(p).unwrap());
        }
    }
    assert!(
        ledger.windows(22).any(|w| w == b"artifact.deployed_edge"),
        "the edge deployment is in the ledger"
    );

    // Rotation mid-flight: the artifact stays verifiable and pullable.
    let new_key = ok(dir, T0 + 50, &["artifact", "key", "rotate"])
        .trim()
        .to_string();
    assert!(new_key.starts_with("ed25519:"));
    let model2 = dir.join("model2.bin");
    std::fs::write(&model2, b"second model").unwrap();
    let d2 = ok(
        dir,
        T0 + 60,
        &[
            "artifact",
            "put",
            model2.to_str().unwrap(),
            "--kind",
            "model",
        ],
    )
    .trim()
    .to_string();
    ok(
        dir,
        T0 + 60,
        &[
            "artifact",
            "sign",
            &d2,
            "--job",
            "job-43",
            "--zone",
            "onprem-a",
            "--repo",
            "r",
            "--commit",
            "abcdef1234567",
        ],
    );
    ok(dir, T0 + 86_400, &["artifact", "get", &digest, "-o", o]);
    let all = ok(dir, T0 + 86_400, &["artifact", "verify"]);
    assert_eq!(
        all.lines().filter(|l| l.starts_with("ok ")).count(),
        2,
        "{all}"
    );

    // Lineage and OpenLineage.
    let up = ok(dir, T0 + 100, &["lineage", &digest, "--up"]);
    assert!(
        up.contains("job:job-42") && up.contains("dataset:claims@v3") && up.contains("lr=0.001"),
        "{up}"
    );
    let down = ok(dir, T0 + 100, &["lineage", "dataset:claims@v3", "--down"]);
    assert!(
        down.contains(&digest) && down.contains("deployment:fraud-eu"),
        "{down}"
    );
    assert!(refused(dir, T0, &["lineage", "job:nope"]).contains("not in the lineage log"));
    let events: Vec<_> = std::fs::read_dir(dir.join("openlineage"))
        .unwrap()
        .collect();
    assert_eq!(events.len(), 2);

    // Tamper with the blob on disk: get and verify refuse.
    let blob = dir
        .join("artifacts/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    assert!(
        refused(dir, T0 + 200, &["artifact", "get", &digest, "-o", o])
            .contains("failed integrity check")
    );
    assert!(refused(dir, T0 + 200, &["artifact", "verify", &digest]).contains("FAIL"));

    // Revoking the key that signed the second model refuses it with the key named.
    ok(dir, T0 + 300, &["artifact", "key", "revoke", &new_key]);
    let msg = refused(dir, T0 + 300, &["artifact", "verify", &d2]);
    assert!(msg.contains("revoked") && msg.contains(&new_key), "{msg}");
}

#[test]
fn experiment_lane_and_bad_inputs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let f = dir.join("x");
    std::fs::write(&f, b"x").unwrap();
    let x = f.to_str().unwrap();
    assert!(
        refused(dir, T0, &["artifact", "put", x, "--kind", "weights"])
            .contains("unknown artifact kind")
    );
    assert!(
        refused(dir, T0, &["artifact", "get", "sha256:abc", "-o", x]).contains("invalid digest")
    );
    assert!(refused(
        dir,
        T0,
        &["artifact", "promote", "sha256:abc", "--to", "validated"]
    )
    .contains("invalid digest"));
    let d = ok(
        dir,
        T0,
        &[
            "artifact",
            "put",
            x,
            "--kind",
            "model-card",
            "--lane",
            "experiment",
        ],
    );
    assert!(ok(dir, T0, &["artifact", "list"]).contains("experiment"));
    assert!(refused(
        dir,
        T0,
        &["artifact", "promote", d.trim(), "--to", "nowhere"]
    )
    .contains("unknown stage"));
}

#[test]
fn token_mint_inspect_check_attenuate_expire_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let a = "dataset:ehr-raw@2026-10";
    let b = "dataset:ct-imaging@v4";
    assert!(refused(
        dir,
        T0,
        &[
            "token",
            "mint",
            "--job",
            "j",
            "--zone",
            "z",
            "--output-prefix",
            "o/"
        ]
    )
    .contains("no token root key"));
    ok(dir, T0, &["token", "keys", "rotate"]);
    let token = ok(
        dir,
        T0,
        &[
            "token",
            "mint",
            "--job",
            "job-42",
            "--zone",
            "hospital-onprem",
            "--input",
            a,
            "--input",
            "dataset:pubmed-abstracts@2026-06",
            "--output-prefix",
            "artifacts/job-42/",
            "--minutes",
            "10",
        ],
    )
    .trim()
    .to_string();
    let claims: serde_json::Value =
        serde_json::from_str(&ok(dir, T0 + 1, &["token", "inspect", &token])).unwrap();
    assert_eq!(claims["job"], "job-42");
    assert_eq!(claims["expires_at"], T0 + 600);

    assert_eq!(
        ok(
            dir,
            T0 + 1,
            &[
                "token",
                "check",
                &token,
                "--read",
                a,
                "--zone",
                "hospital-onprem"
            ]
        )
        .trim(),
        "allowed"
    );
    assert!(refused(
        dir,
        T0 + 1,
        &[
            "token",
            "check",
            &token,
            "--read",
            b,
            "--zone",
            "hospital-onprem"
        ]
    )
    .contains("denied"));
    ok(
        dir,
        T0 + 1,
        &[
            "token",
            "check",
            &token,
            "--write",
            "artifacts/job-42/model",
            "--zone",
            "hospital-onprem",
        ],
    );
    assert!(refused(
        dir,
        T0 + 600,
        &[
            "token",
            "check",
            &token,
            "--read",
            a,
            "--zone",
            "hospital-onprem"
        ]
    )
    .contains("expired"));

    let narrow = ok(
        dir,
        T0 + 2,
        &[
            "token",
            "attenuate",
            &token,
            "--read-only",
            "--prefix",
            "dataset:pubmed",
        ],
    )
    .trim()
    .to_string();
    ok(
        dir,
        T0 + 3,
        &[
            "token",
            "check",
            &narrow,
            "--read",
            "dataset:pubmed-abstracts@2026-06",
            "--zone",
            "hospital-onprem",
        ],
    );
    assert!(refused(
        dir,
        T0 + 3,
        &[
            "token",
            "check",
            &narrow,
            "--read",
            a,
            "--zone",
            "hospital-onprem"
        ]
    )
    .contains("denied"));

    let user = ok(
        dir,
        T0,
        &[
            "token",
            "mint",
            "--user",
            "ana",
            "--role",
            "submitter",
            "--team",
            "fraud",
        ],
    )
    .trim()
    .to_string();
    ok(
        dir,
        T0 + 1,
        &[
            "token", "check", &user, "--action", "submit", "--team", "fraud",
        ],
    );
    assert!(refused(
        dir,
        T0 + 1,
        &["token", "check", &user, "--action", "approve", "--team", "fraud"]
    )
    .contains("denied"));
    assert!(refused(
        dir,
        T0 + 1,
        &["token", "check", &user, "--action", "submit", "--team", "risk"]
    )
    .contains("denied"));

    ok(dir, T0 + 5, &["token", "keys", "revoke", "1"]);
    assert!(refused(
        dir,
        T0 + 6,
        &[
            "token",
            "check",
            &token,
            "--read",
            a,
            "--zone",
            "hospital-onprem"
        ]
    )
    .contains("revoked"));
    let ring: serde_json::Value =
        serde_json::from_str(&ok(dir, T0, &["token", "keys", "export"])).unwrap();
    assert!(ring["keys"][0]["revoked_at"].is_u64());
}

#[test]
fn sync_back_from_burst_zone_is_gated() {
    let private = tempfile::tempdir().unwrap();
    let burst = tempfile::tempdir().unwrap();
    let (p, b) = (private.path(), burst.path());
    let f = b.join("ckpt");
    std::fs::write(&f, b"burst checkpoint").unwrap();
    let key = ok(
        b,
        T0,
        &["artifact", "key", "init", "--owner", "zone:gpuaas-eu"],
    )
    .trim()
    .to_string();
    let d = ok(
        b,
        T0,
        &[
            "artifact",
            "put",
            f.to_str().unwrap(),
            "--kind",
            "checkpoint",
        ],
    )
    .trim()
    .to_string();
    ok(
        b,
        T0,
        &[
            "artifact",
            "sign",
            &d,
            "--job",
            "burst-1",
            "--zone",
            "gpuaas-eu",
            "--repo",
            "r",
            "--commit",
            "abcdef1234567",
        ],
    );
    let from = b.to_str().unwrap();
    // Not trusted yet: refused.
    let msg = refused(
        p,
        T0 + 5,
        &[
            "artifact",
            "import",
            &d,
            "--from",
            from,
            "--zone",
            "gpuaas-eu",
        ],
    );
    assert!(msg.contains("unknown signing key"), "{msg}");
    ok(
        p,
        T0 + 5,
        &["artifact", "key", "trust", &key, "--from", from],
    );
    let msg = refused(
        p,
        T0 + 6,
        &[
            "artifact", "import", &d, "--from", from, "--zone", "onprem-a",
        ],
    );
    assert!(msg.contains("not an allowed source zone"), "{msg}");
    assert!(ok(
        p,
        T0 + 7,
        &[
            "artifact",
            "import",
            &d,
            "--from",
            from,
            "--zone",
            "gpuaas-eu"
        ]
    )
    .contains("imported"));
    let out = p.join("out");
    ok(
        p,
        T0 + 8,
        &["artifact", "get", &d, "-o", out.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(out).unwrap(), b"burst checkpoint");
}

#[test]
fn get_with_job_token_reads_only_granted_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, T0, &["artifact", "key", "init"]);
    ok(dir, T0, &["token", "keys", "rotate"]);
    let mut ds = Vec::new();
    for name in ["a", "b"] {
        let f = dir.join(name);
        std::fs::write(&f, name).unwrap();
        let d = ok(
            dir,
            T0,
            &[
                "artifact",
                "put",
                f.to_str().unwrap(),
                "--kind",
                "checkpoint",
            ],
        )
        .trim()
        .to_string();
        ok(
            dir,
            T0,
            &[
                "artifact",
                "sign",
                &d,
                "--job",
                "train",
                "--zone",
                "hospital-onprem",
                "--repo",
                "r",
                "--commit",
                "abcdef1234567",
            ],
        );
        ds.push(d);
    }
    let input = format!("checkpoint:{}", ds[0]);
    let token = ok(
        dir,
        T0,
        &[
            "token",
            "mint",
            "--job",
            "ft",
            "--zone",
            "hospital-onprem",
            "--input",
            &input,
            "--output-prefix",
            "out/",
        ],
    )
    .trim()
    .to_string();
    let out = dir.join("out.bin");
    let o = out.to_str().unwrap();
    ok(
        dir,
        T0 + 1,
        &[
            "artifact",
            "get",
            &ds[0],
            "-o",
            o,
            "--token",
            &token,
            "--zone",
            "hospital-onprem",
        ],
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"a");
    let msg = refused(
        dir,
        T0 + 1,
        &[
            "artifact",
            "get",
            &ds[1],
            "-o",
            o,
            "--token",
            &token,
            "--zone",
            "hospital-onprem",
        ],
    );
    assert!(msg.contains("access refused"), "{msg}");
    let events = std::fs::read_to_string(dir.join("artifacts/events.jsonl")).unwrap();
    assert!(
        events.contains("token_use") && events.contains("token_refused"),
        "{events}"
    );
}

#[test]
fn job_tokens_never_hand_data_to_a_zone_it_may_not_be_in() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, T0, &["artifact", "key", "init"]);
    ok(dir, T0, &["token", "keys", "rotate"]);
    let mint = |zone: &str, input: &str| {
        tg(
            dir,
            T0,
            &[
                "token",
                "mint",
                "--job",
                "j-1",
                "--zone",
                zone,
                "--input",
                input,
                "--output-prefix",
                "out/",
            ],
        )
    };
    // Raw PHI into a public zone: refused at mint, naming the input and the rule.
    let o = mint("public-eu", "dataset:ehr-raw@2026-10");
    let msg = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success(),
        "minted a token for raw PHI in public-eu"
    );
    assert!(
        msg.contains("ehr-raw@2026-10") && msg.contains("private-only"),
        "{msg}"
    );
    // Export-controlled data outside its jurisdiction: refused; public data there: granted.
    assert!(!mint("public-eu", "dataset:scanner-firmware-traces@v1")
        .status
        .success());
    assert!(mint("public-eu", "dataset:pubmed-abstracts@2026-06")
        .status
        .success());
    // Unknown inputs are never granted.
    let o = mint("hospital-onprem", "dataset:nope@v1");
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no dataset version")
    );
    let o = mint("hospital-onprem", "whatever");
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cannot be classified")
    );

    // A stored artifact: unclassified counts as the most sensitive data; classified public may go.
    let f = dir.join("snap");
    std::fs::write(&f, b"rows").unwrap();
    let unclassified = ok(
        dir,
        T0,
        &[
            "artifact",
            "put",
            f.to_str().unwrap(),
            "--kind",
            "dataset-snapshot",
        ],
    )
    .trim()
    .to_owned();
    let o = mint("public-eu", &format!("dataset-snapshot:{unclassified}"));
    assert!(
        !o.status.success(),
        "an unclassified artifact was granted to a public zone"
    );
    std::fs::write(&f, b"open rows").unwrap();
    let open = ok(
        dir,
        T0,
        &[
            "artifact",
            "put",
            f.to_str().unwrap(),
            "--kind",
            "dataset-snapshot",
            "--classification",
            "public",
        ],
    )
    .trim()
    .to_owned();
    let o = mint("public-eu", &format!("dataset-snapshot:{open}"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    // A record edited to say public does not get a token minted: its encryption no longer opens.
    let rec = dir.join("artifacts/records/sha256").join(format!(
        "{}.json",
        unclassified.trim_start_matches("sha256:")
    ));
    let original = std::fs::read_to_string(&rec).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    v["classification"] = serde_json::json!({"level": "public"});
    std::fs::write(&rec, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = mint("public-eu", &format!("dataset-snapshot:{unclassified}"));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "a tampered record was trusted at mint");
    assert!(
        err.contains("tamper") || err.contains("authenticate"),
        "{err}"
    );
    std::fs::write(&rec, original).unwrap();
    let out = dir.join("out.bin");
    ok(
        dir,
        T0 + 1,
        &[
            "artifact",
            "get",
            &open,
            "-o",
            out.to_str().unwrap(),
            "--token",
            &token,
            "--zone",
            "public-eu",
        ],
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"open rows");
    // A token minted outside the check (with the root key itself) still meets the rule at the
    // read: the grant never overrides where data may be.
    let keys = tidegate_identity::RootKeyStore::new(&dir.join("keys"));
    let spec = tidegate_identity::TokenSpec::Job {
        job_id: "j-2".into(),
        zone: "public-eu".into(),
        inputs: vec![format!("dataset-snapshot:{unclassified}")],
        output_prefix: "o/".into(),
        ttl_minutes: 10,
    };
    let bad = keys
        .issuer()
        .unwrap()
        .mint(&keys.keyring().unwrap(), &spec, T0)
        .unwrap();
    let msg = refused(
        dir,
        T0 + 1,
        &[
            "artifact",
            "get",
            &unclassified,
            "-o",
            out.to_str().unwrap(),
            "--token",
            &bad,
            "--zone",
            "public-eu",
        ],
    );
    assert!(
        msg.contains("zone-not-allowed") || msg.contains("may not be"),
        "{msg}"
    );
    let events = std::fs::read_to_string(dir.join("artifacts/events.jsonl")).unwrap();
    assert!(
        events.contains("zone-not-allowed"),
        "the refusal is recorded: {events}"
    );
    assert!(refused(
        dir,
        T0,
        &[
            "artifact",
            "put",
            f.to_str().unwrap(),
            "--kind",
            "model",
            "--classification",
            "secret"
        ]
    )
    .contains("unknown level"),);
}
