//! Sub-pipelines and fan-out: multi-service and multi-repo pipelines.

mod support;

use gantry_core::{CommandStep, Context, Event, OutputKey, Pipeline, RunStatus, StepError, StepStatus, step_fn};

const VERSION: OutputKey<String> = OutputKey::new("version");

fn deploy_one(service: &str) -> gantry_core::StepBuilder {
    let fails = service == "worker";
    Pipeline::builder(format!("deploy-{service}"))
        .step("preflight", CommandStep::new("echo").args(["preflight", "{{service}}"]))
        .step(
            "rollout",
            step_fn(move |ctx| async move {
                let version = ctx.output("build", VERSION)?;
                ctx.log(format!("rolling out {} {version}", ctx.require_var("service")?));
                if fails { Err(StepError::new("crash loop")) } else { Ok(()) }
            }),
        )
        .after(["preflight"])
}

#[tokio::test]
async fn fan_out_runs_one_sub_run_per_service_with_namespaced_steps() {
    let p = Pipeline::builder("release")
        .step(
            "build",
            step_fn(|ctx| async move {
                ctx.publish(VERSION, "v42".to_owned());
                Ok(())
            }),
        )
        .fan_out("deploy", "service", ["api", "web", "worker"], deploy_one)
        .after(["build"])
        .build()
        .unwrap();
    let (report, events) = support::run_collecting(&p, Context::new()).await;

    assert_eq!(report.status, RunStatus::Failed);
    let deploy = report.step("deploy").unwrap();
    assert_eq!(deploy.status, StepStatus::Failed);
    assert_eq!(deploy.reason.as_deref(), Some("1 of 3 sub-runs failed: `worker` failed at `deploy[worker]/rollout`"));
    assert_eq!(report.status_of("deploy[api]/rollout"), Some(StepStatus::Succeeded));
    assert_eq!(report.status_of("deploy[worker]/rollout"), Some(StepStatus::Failed));
    assert_eq!(deploy.children.len(), 6);

    let logs: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Log { step, line, .. } => Some((step.to_string(), line.to_string())),
            _ => None,
        })
        .collect();
    assert!(logs.contains(&("deploy[web]/preflight".into(), "preflight web".into())), "{logs:?}");
    assert!(logs.contains(&("deploy[api]/rollout".into(), "rolling out api v42".into())), "{logs:?}");
}

#[tokio::test]
async fn a_sub_pipeline_is_one_step_with_namespaced_inner_steps() {
    let checks = Pipeline::builder("checks")
        .step("lint", step_fn(|_| async { Ok(()) }))
        .step(
            "unit",
            step_fn(|ctx| async move {
                ctx.set_var("passed", "12");
                Ok(())
            }),
        )
        .after(["lint"])
        .build()
        .unwrap();
    let p = Pipeline::builder("ci")
        .pipeline("checks", checks)
        .step(
            "report",
            step_fn(|ctx| async move {
                // Variables set inside a sub-pipeline stay in it.
                assert_eq!(ctx.var("unit.passed"), None);
                Ok(())
            }),
        )
        .after(["checks"])
        .build()
        .unwrap();
    let report = p.run(Context::new()).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let names: Vec<&str> = report.all_steps().iter().map(|s| &*s.name).collect();
    assert_eq!(names, ["checks", "checks/lint", "checks/unit", "report"]);
}

#[tokio::test]
async fn multi_repo_pipelines_fan_out_over_repositories() {
    let p = Pipeline::builder("multi-repo")
        .fan_out("repo", "repo", ["org/api", "org/web"], |_| {
            Pipeline::builder("per-repo")
                .step("checkout", CommandStep::new("echo").args(["cloning", "{{repo}}", "at", "{{sha}}"]))
        })
        .build()
        .unwrap();
    let report = p.run(Context::new().var("sha", "abc123")).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.status_of("repo[org/web]/checkout"), Some(StepStatus::Succeeded));
    // The item variable is known to the template check; an unknown one is not.
    let bad = Pipeline::builder("x")
        .fan_out("repo", "repo", ["a"], |_| Pipeline::builder("y").step("s", CommandStep::new("echo").arg("{{rpeo}}")))
        .build()
        .unwrap();
    let problems = bad.check_variables(&Context::new());
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].step, "repo[a]/s");
}
