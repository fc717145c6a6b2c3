//! The SOPS step: decrypted values become run secrets, usable by later steps and masked everywhere.

use futures::StreamExt;
use gantry_core::{CommandStep, Context, Pipeline, Run, RunStatus};
use gantry_sops::{Identities, SopsSecrets};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");

#[tokio::test]
async fn decrypted_values_are_run_secrets_masked_in_every_event() {
    let keys = Identities::parse(&std::fs::read_to_string(format!("{DATA}key1.txt")).unwrap()).unwrap();
    let pipeline = Pipeline::builder("release")
        .step("secrets", SopsSecrets::file(format!("{DATA}secrets.enc.{{{{ext}}}}"), keys))
        .step(
            "use",
            CommandStep::new("sh").args([
                "-c",
                "echo password=$0 user=$1",
                "{{secrets.secrets.db.password}}",
                "{{secrets.secrets.db.user}}",
            ]),
        )
        .after(["secrets"])
        .build()
        .expect("secrets set by an upstream step pass the template check");
    let run = Run::new(&pipeline, Context::new().var("ext", "yaml"));
    let events = run.subscribe();
    let report = run.execute().await.unwrap();
    let events: Vec<String> = events.map(|e| format!("{e:?}")).collect().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let all = format!("{}\n{report}\n{report:?}", events.join("\n"));
    // Every encrypted value is masked, even the one-letter list items (so the `a` of `password` is, too).
    assert!(all.contains("=******** user=********\""), "the command ran with the values, masked in its output: {all}");
    assert!(all.contains("decrypted 7 v") && all.contains("; 1 more "), "7 secrets and 1 plain value: {all}");
    assert!(all.contains("/secrets.enc.y"), "the plaintext note is a variable, not a secret: {all}");
    for secret in ["s3cr3t-p@ss", "deploy"] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }

    // A secret no upstream step sets is caught before the run.
    let wrong = Pipeline::builder("release")
        .step("use", CommandStep::new("echo").args(["{{secrets.secrets.db.password}}"]))
        .build()
        .unwrap();
    assert!(wrong.run(Context::new()).await.is_err(), "unknown secret refused before anything runs");
}

#[tokio::test]
async fn a_file_that_does_not_decrypt_fails_the_step_saying_why() {
    let other = Identities::parse(&std::fs::read_to_string(format!("{DATA}key2.txt")).unwrap()).unwrap();
    let pipeline = Pipeline::builder("p")
        .step("secrets", SopsSecrets::file(format!("{DATA}secrets.enc.json"), other))
        .build()
        .unwrap();
    let report = pipeline.run(Context::new()).await.unwrap();
    let reason = report.step("secrets").unwrap().reason.clone().unwrap();
    assert!(reason.contains("cannot decrypt") && reason.contains("no identity matches"), "{reason}");
}

#[test]
fn the_file_is_read_off_the_runs_thread() {
    // The SOPS file is a FIFO that another step of the same run fills. Read on the run's own thread, the open would
    // block that thread for good, and the writing step would never start; off it, both go on.
    let dir = std::env::temp_dir().join(format!("gantry-sops-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("secrets.enc.yaml");
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let content = std::fs::read(format!("{DATA}secrets.enc.yaml")).unwrap();
    let keys = Identities::parse(&std::fs::read_to_string(format!("{DATA}key1.txt")).unwrap()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let writer = path.clone();
        let pipeline = Pipeline::builder("p")
            .step("secrets", SopsSecrets::file(path.display().to_string(), keys))
            .step(
                "write",
                gantry_core::step_fn(move |_| {
                    let (writer, content) = (writer.clone(), content.clone());
                    async move {
                        tokio::task::spawn_blocking(move || std::fs::write(writer, content)).await.unwrap().unwrap();
                        Ok(())
                    }
                }),
            )
            .build()
            .unwrap();
        let _ = tx.send(runtime.block_on(pipeline.run(Context::new())).unwrap());
    });
    let report = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("the run's thread was blocked on the file");
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
