//! What `build()` and a run's start reject, each naming the steps involved.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gantry_core::{BuildError, CommandStep, Context, Pipeline, RunError, Secret, TemplateError, TriggerRule, step_fn};

fn ok() -> impl gantry_core::Step {
    step_fn(|_| async { Ok(()) })
}

#[test]
fn a_cycle_is_rejected_and_listed() {
    let err = Pipeline::builder("p")
        .step("a", ok())
        .after(["c"])
        .step("b", ok())
        .after(["a"])
        .step("c", ok())
        .after(["b"])
        .step("d", ok())
        .build()
        .unwrap_err();
    let BuildError::Cycle { pipeline, cycle } = &err else { panic!("{err}") };
    assert_eq!(pipeline, "p");
    assert_eq!(cycle.first(), cycle.last());
    let mut members = cycle[..3].to_vec();
    members.sort();
    assert_eq!(members, ["a", "b", "c"]);
    assert!(err.to_string().starts_with("pipeline `p` has a cycle: "), "{err}");
}

#[test]
fn a_self_dependency_is_a_cycle() {
    let err = Pipeline::builder("p").step("a", ok()).after(["a"]).build().unwrap_err();
    assert_eq!(err.to_string(), "pipeline `p` has a cycle: a -> a");
}

#[test]
fn duplicate_names_unknown_dependencies_and_orphan_failure_handlers() {
    let dup = Pipeline::builder("p").step("a", ok()).step("a", ok()).build().unwrap_err();
    assert_eq!(dup, BuildError::DuplicateStep { pipeline: "p".into(), step: "a".into() });

    let unknown = Pipeline::builder("p").step("deploy", ok()).after(["biuld"]).build().unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "step `deploy` of pipeline `p` depends on `biuld`, which is not a step of the pipeline"
    );

    let orphan = Pipeline::builder("p").step("rollback", ok()).rule(TriggerRule::OnFailure).build().unwrap_err();
    assert_eq!(orphan, BuildError::FailureHandlerWithoutUpstream { pipeline: "p".into(), step: "rollback".into() });

    for bad in ["a/b", "git.sha", "", "fan[x]", "two\nlines"] {
        let err = Pipeline::builder("p").step(bad, ok()).build().unwrap_err();
        assert!(matches!(err, BuildError::InvalidName { ref step, .. } if step == bad), "{err}");
    }
}

#[test]
fn errors_inside_a_fan_out_name_the_path() {
    let err = Pipeline::builder("release")
        .fan_out("deploy", "service", ["api", "web"], |svc| {
            let b = Pipeline::builder(format!("deploy-{svc}")).step("up", ok());
            if svc == "web" { b.step("up", ok()) } else { b.step("down", ok()) }
        })
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "in `deploy[web]` of pipeline `release`: pipeline `deploy-web` has two steps named `up`"
    );
    let empty = Pipeline::builder("release")
        .fan_out("deploy", "service", Vec::<String>::new(), |_| Pipeline::builder("x"))
        .build()
        .unwrap_err();
    assert!(matches!(empty, BuildError::EmptyFanOut { .. }));
}

#[test]
fn fan_out_items_that_would_make_step_names_ambiguous_are_refused() {
    let fan = |items: Vec<&str>| {
        Pipeline::builder("release")
            .fan_out("deploy", "service", items, |_| Pipeline::builder("one").step("up", ok()))
            .build()
            .unwrap_err()
    };
    let dup = fan(vec!["api", "web", "api"]);
    assert_eq!(
        dup.to_string(),
        "fan-out `deploy` of pipeline `release` has the item \"api\" twice: each item names one sub-run"
    );
    for (item, problem) in [
        ("c]d", "holds `[` or `]`"),
        ("a[0", "holds `[` or `]`"),
        ("", "is empty"),
        ("tab\there", "holds a control character"),
    ] {
        let err = fan(vec!["api", item]);
        assert!(
            matches!(&err, BuildError::InvalidFanOutItem { item: i, problem: p, .. } if i == item && *p == problem),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("fan-out `deploy` of pipeline `release` has the item {item:?}, which {problem}")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn unknown_template_variables_stop_the_run_before_anything_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let ran2 = Arc::clone(&ran);
    let p = Pipeline::builder("p")
        .step(
            "first",
            step_fn(move |_| {
                let ran = Arc::clone(&ran2);
                async move {
                    ran.store(true, Ordering::SeqCst);
                    Ok(())
                }
            }),
        )
        .step("deploy", CommandStep::new("kubectl").args(["set", "image", "deploy/{{service}}", "app={{imgae}}"]))
        .after(["first"])
        .step("notify", CommandStep::new("echo").arg("{{secrets.slack}}"))
        .build()
        .unwrap();
    let err = p.run(Context::new().var("service", "api").var("image", "api:2")).await.unwrap_err();
    assert!(!ran.load(Ordering::SeqCst), "nothing ran");
    let RunError::Templates { problems, .. } = &err else { panic!() };
    let found: Vec<(String, String)> = problems
        .iter()
        .map(|p| match &p.error {
            TemplateError::UnknownVariable { name, .. } => (p.step.clone(), name.clone()),
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(found, [("deploy".to_owned(), "imgae".to_owned()), ("notify".to_owned(), "secrets.slack".to_owned())]);
    assert!(err.to_string().contains("step `deploy`: unknown variable `imgae`"), "{err}");

    // With the secret and the right name, it runs.
    let ctx = Context::new().var("service", "api").var("imgae", "x").secret("slack", Secret::new("s"));
    let problems = p.check_variables(&ctx);
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn step_variables_resolve_only_downstream_of_the_step_that_sets_them() {
    let p = Pipeline::builder("p")
        .step("build", ok())
        .step("deploy", CommandStep::new("echo").arg("{{build.tag}}"))
        .after(["build"])
        .step("parallel", CommandStep::new("echo").arg("{{build.tag}}"))
        .build()
        .unwrap();
    let problems = p.check_variables(&Context::new());
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].step, "parallel");
}

#[test]
fn malformed_templates_are_reported_with_their_step() {
    let p = Pipeline::builder("p").step("bad", CommandStep::new("echo").arg("{{unclosed")).build().unwrap();
    let problems = p.check_variables(&Context::new());
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].to_string(), "step `bad`: unclosed `{{` at byte 0 in template `{{unclosed`");
}

#[tokio::test]
async fn a_slash_in_a_fan_out_item_keeps_step_names_distinct() {
    // Repository names are the usual items of a multi-repo fan-out; between brackets that items cannot contain, a
    // `/` is not a sub-pipeline separator.
    let ok = || step_fn(|_| async { Ok(()) });
    let p = Pipeline::builder("release")
        .fan_out("repo", "name", ["acme/api", "acme"], |_| {
            Pipeline::builder("one")
                .step("build", ok())
                .pipeline("api", Pipeline::builder("n").step("build", ok()).build().unwrap())
        })
        .build()
        .unwrap();
    let report = p.run(Context::new()).await.unwrap();
    let mut names: Vec<&str> = report.all_steps().iter().map(|s| &*s.name).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "repo",
            "repo[acme/api]/api",
            "repo[acme/api]/api/build",
            "repo[acme/api]/build",
            "repo[acme]/api",
            "repo[acme]/api/build",
            "repo[acme]/build"
        ]
    );
}
