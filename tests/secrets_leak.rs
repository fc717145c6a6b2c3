//! No secret, in any shape, reaches any surface a person or a tool sees.
//!
//! A child process (this test binary, running `every_surface_of_a_run_with_secrets`) runs pipelines that use secrets
//! of every shape: a token, a multi-line key, a value read from a file with its newline, two secrets that overlap in
//! a text, secrets used as fan-out items and in a condition, a variable that holds one. Its steps print them plainly,
//! line by line, in errors, retries, outputs and a panic, and in the encodings a careless step might use (base64, HTTP
//! Basic credentials, percent-encoded, JSON- and Rust-escaped). The child writes every surface to its standard
//! output and error: events (Debug and JSON), the report (Display, Debug, JSON), the plan, DOT and Mermaid exports,
//! a run error, the context, the debugger's pauses and variables, tracing at TRACE, the panic hook's message, a
//! notifier's view, and what the simulated Slack and the GitHub stand-in received. The parent greps all of it.
//!
//! What masking cannot catch is listed in `docs/guides/secrets.md`.
#![allow(clippy::print_stdout)] // The child prints every surface for the parent to read.

use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use gantry::prelude::*;
use gantry_core::{Breakpoint, Debugger, Resume, RunInfo};
use gantry_github::{GitHub, Route, Webhooks, sign_payload};
use gantry_slack::Slack;
use gantry_testkit::receiver::Receiver;
use gantry_testkit::slack::{BOT_TOKEN, CHANNEL, SlackSim};

const CHILD: &str = "GANTRY_LEAK_CHILD";

const TOKEN: &str = "tok-4f9a8e7d-SECRET";
const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\n\
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
QyNTUxOQAAACDx2jv0Q6Lz9sQhK1mJdH3vU7eXl9cW4fQeY0sN1b2XaAAAAJgXq3mFF6t5\n\
hQAAAAtzc2gtZWQyNTUxOQAAACDx2jv0Q6Lz9sQhK1mJdH3vU7eXl9cW4fQeY0sN1b2Xb\n\
-----END OPENSSH PRIVATE KEY-----\n";
/// As read from a file: with its newline. Steps use it without.
const FROM_FILE: &str = "filepass-8c1e77\n";
const OVERLAP_A: &str = "abc-123-OVERLAP";
const OVERLAP_B: &str = "OVERLAP-789-tail";
const DSN: &str = "app:dsnpass-55z@db.internal:5432";
const DSN_2: &str = "app:other-66y@db2.internal:5432";
const RUNTIME: &str = "runtime-9q8w7e6r";
const WEBHOOK_SECRET: &str = "whsec-leak-test";

/// Everything that must never show, each with what it is.
fn forbidden() -> Vec<(String, String)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let basic = b64.encode(format!("deploy:{TOKEN}"));
    let mut all = vec![
        ("the token".to_owned(), TOKEN.to_owned()),
        ("the token's distinctive part".to_owned(), "4f9a8e7d".to_owned()),
        ("the file secret".to_owned(), FROM_FILE.trim().to_owned()),
        ("the first overlapping secret's own part".to_owned(), "abc-123".to_owned()),
        ("the second overlapping secret's own part".to_owned(), "789-tail".to_owned()),
        ("the overlap".to_owned(), "OVERLAP".to_owned()),
        ("a fan-out item's password".to_owned(), "dsnpass-55z".to_owned()),
        ("another fan-out item's password".to_owned(), "other-66y".to_owned()),
        ("a secret added at run time".to_owned(), RUNTIME.to_owned()),
        ("the token in base64".to_owned(), b64.encode(TOKEN)),
        ("the token in URL-safe base64".to_owned(), b64url.encode(TOKEN)),
        ("the token inside HTTP Basic credentials".to_owned(), basic[8..basic.len() - 4].to_owned()),
        ("the DSN percent-encoded".to_owned(), "dsnpass-55z%40db".to_owned()),
    ];
    for (i, line) in KEY.lines().filter(|l| !l.starts_with("-----")).enumerate() {
        all.push((format!("line {} of the key", i + 1), line.to_owned()));
        // Any 12 characters of a line would give part of the key away.
        all.push((format!("the start of line {} of the key", i + 1), line[..12].to_owned()));
    }
    all
}

/// The surfaces the child printed, each opened by a marker line; the parent checks each was really produced.
const MARKERS: &[&str] = &[
    "== events (Debug)",
    "== events (JSON)",
    "== report (Display)",
    "== report (Debug)",
    "== report (JSON)",
    "== plan",
    "== DOT",
    "== Mermaid",
    "== run error",
    "== context",
    "== debugger",
    "== notifier",
    "== Slack",
    "== GitHub",
    "== done",
];

#[test]
fn no_secret_of_any_shape_reaches_any_surface() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "every_surface_of_a_run_with_secrets", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "0")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child failed:\n{stdout}\n{stderr}");
    for marker in MARKERS {
        assert!(stdout.contains(marker), "the child printed no `{marker}`:\n{stdout}");
    }
    // The secrets were in play: masked where they would have been.
    let masks = stdout.matches("********").count();
    assert!(masks > 100, "only {masks} masks:\n{stdout}");
    for shown in [
        "condition false: mode == ********",
        "each[******** #1]/use",
        "each[billing]/use",
        "each[******** #3]/use",
        "deploy:******** ",
        "\"reason\": \"step panicked: bad token ********\"",
        "\"both ********\"",
    ] {
        assert!(stdout.contains(shown), "expected `{shown}` in:\n{stdout}");
    }
    // The panic went through the hook, masked; tracing wrote at TRACE.
    assert!(stderr.contains("panicked at") && stderr.contains("bad token ********"), "{stderr}");
    assert!(stderr.contains("step output"), "tracing wrote the log lines:\n{stderr}");

    let mut leaks = Vec::new();
    for (what, value) in forbidden() {
        for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            for line in text.lines().filter(|l| l.contains(&value)) {
                leaks.push(format!("{what} ({value}) on {stream}: {line}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n"));
}

/// The child's part, run by `no_secret_of_any_shape_reaches_any_surface` (it does nothing unless asked to).
#[test]
#[ignore = "run by no_secret_of_any_shape_reaches_any_surface in a child process"]
fn every_surface_of_a_run_with_secrets() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(show_every_surface());
    println!("== done");
}

fn context() -> Context {
    Context::new()
        .var("mode", "normal")
        .var("dsn", format!("postgres://{DSN}/app"))
        .var("repo", "acme/shop")
        .var("environment", "production")
        .secret("token", Secret::new(TOKEN))
        .secret("key", Secret::new(KEY))
        .secret("from_file", Secret::new(FROM_FILE))
        .secret("overlap_a", Secret::new(OVERLAP_A))
        .secret("overlap_b", Secret::new(OVERLAP_B))
        .secret("dsn", Secret::new(DSN))
        .secret("dsn_2", Secret::new(DSN_2))
}

const SEEN: OutputKey<String> = OutputKey::new("seen");

fn pipeline() -> Pipeline {
    Pipeline::builder("release")
        .step(
            "print",
            CommandStep::new("sh")
                .args([
                    "-c",
                    "echo token $TOKEN; printf '%s\\n' \"$KEY\"; echo file $FILE; printf '%s' \"$TOKEN\" | base64; \
                     echo fail $TOKEN >&2; exit 3",
                ])
                .env("TOKEN", "{{secrets.token}}")
                .env("KEY", "{{secrets.key}}")
                .env("FILE", "{{secrets.from_file}}"),
        )
        .allow_failure()
        .step(
            "encode",
            step_fn(|ctx| async move {
                let b64 = base64::engine::general_purpose::STANDARD;
                let token = ctx.secret("token")?;
                let key = ctx.secret("key")?;
                let dsn = ctx.secret("dsn")?;
                // The two overlapping secrets in one text, sharing their middle.
                let (a, b) = (ctx.secret("overlap_a")?, ctx.secret("overlap_b")?);
                let shared = b.expose().len() - b.expose().find('-').unwrap_or(0);
                ctx.log(format!("both {}{}", a.expose(), &b.expose()[b.expose().len() - shared..]));
                ctx.log(format!("basic: Authorization: Basic {}", b64.encode(format!("deploy:{}", token.expose()))));
                ctx.log(format!(
                    "url-safe: {}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.expose())
                ));
                ctx.log(format!("json: {}", serde_json::json!({ "key": key.expose() })));
                ctx.log(format!("debug: {:?}", key.expose()));
                let encoded: String = dsn
                    .expose()
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                            char::from(b).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                ctx.log(format!("percent: ?dsn={encoded}"));
                ctx.log(format!("vars: {:?}", ctx.vars()));
                ctx.publish(SEEN, format!("deploy:{} with {}", token.expose(), ctx.require_var("dsn")?));
                ctx.add_secret("runtime", Secret::new(RUNTIME));
                ctx.log(format!("learnt {RUNTIME}"));
                Ok(())
            }),
        )
        .step(
            "retry",
            step_fn(|ctx| async move {
                let token = ctx.secret("token")?;
                if ctx.attempt() < 2 {
                    return Err(StepError::new(format!("registry refused {}", token.expose())).retryable());
                }
                Ok(())
            }),
        )
        .retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
        .step(
            "parse-key",
            step_fn(|ctx| async move {
                let key = ctx.secret("key")?;
                Err(StepError::new(format!("could not parse the key:\n{}", key.expose())))
            }),
        )
        .allow_failure()
        .step(
            "panicked",
            step_fn(|ctx| async move {
                let token = ctx.secret("token")?;
                panic!("bad token {}", token.expose());
            }),
        )
        .allow_failure()
        .step("admin-only", step_fn(|_| async { Ok(()) }))
        .when(Condition::var_equals("mode", TOKEN))
        .fan_out("each", "conn", [DSN, "billing", DSN_2], |_| {
            Pipeline::builder("one").step(
                "use",
                step_fn(|ctx| async move {
                    ctx.log(format!("connecting to {}", ctx.require_var("conn")?));
                    Ok(())
                }),
            )
        })
        .build()
        .unwrap()
}

/// A notifier that prints what notifiers are told of a run.
struct Printer;

#[async_trait]
impl Notifier for Printer {
    fn name(&self) -> &str {
        "printer"
    }

    async fn follow(&self, run: RunInfo, mut events: gantry_core::EventStream) -> Vec<gantry_core::NotifyError> {
        println!("== notifier\n{run:?}");
        while let Some(event) = events.next().await {
            println!("{event:?}");
        }
        Vec::new()
    }
}

async fn show_every_surface() {
    let p = pipeline();
    let ctx = context();
    let slack_api = SlackSim::start().await.unwrap();
    let slack = Slack::bot(Secret::new(BOT_TOKEN), CHANNEL.0)
        .api_url(slack_api.api_url())
        .run_url("https://deploys.example/runs/{run_id}?dsn={dsn}");

    let run = Run::new(&p, ctx.clone()).notify(slack).notify(Printer).notify_grace(Duration::from_secs(10));
    let events = run.subscribe();
    let report = run.execute().await.unwrap();
    let events: Vec<Event> = events.collect().await;
    println!("== events (Debug)");
    for event in &events {
        println!("{event:?}");
    }
    println!("== events (JSON)");
    for event in &events {
        println!("{}", serde_json::to_string(event).unwrap());
    }
    println!("== report (Display)\n{report}");
    println!("== report (Debug)\n{report:?}");
    println!("== report (JSON)\n{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(report.steps.len() >= 7, "{report}");

    let plan = p.plan(&ctx);
    println!("== plan\n{plan}\n{plan:?}\n{}", serde_json::to_string(&plan).unwrap());
    println!("== DOT\n{}", p.to_dot_masked(&ctx));
    println!("== Mermaid\n{}", p.to_mermaid_masked(&ctx));

    let needs_more = Pipeline::builder("needs-more")
        .fan_out("each", "conn", [DSN], |_| {
            Pipeline::builder("one").step("use", CommandStep::new("echo").arg("{{missing}} {{conn}}"))
        })
        .build()
        .unwrap();
    let error = needs_more.run(ctx.clone()).await.unwrap_err();
    println!("== run error\n{error}\n{error:?}");
    println!("== context\n{ctx:?}");

    debugger(&ctx).await;

    println!("== Slack");
    for message in slack_api.messages() {
        println!("{}\n{}", message.all_text(), serde_json::to_string(&message.blocks).unwrap());
    }
    github(&slack_api).await;
}

async fn debugger(ctx: &Context) {
    println!("== debugger");
    let p = Pipeline::builder("inspect")
        .step(
            "learn",
            step_fn(|ctx| async move {
                ctx.set_var("conn", format!("postgres://{DSN}/app"));
                Err(StepError::new(format!("login with {} refused", ctx.secret("token")?.expose())))
            }),
        )
        .allow_failure()
        .step("inspect", step_fn(|_| async { Ok(()) }))
        .after(["learn"])
        .build()
        .unwrap();
    let (hook, mut debugger) = Debugger::new([Breakpoint::Step("inspect".into()), Breakpoint::OnFailure]);
    let run = tokio::spawn(Run::new(&p, ctx.clone()).hook(hook).execute());
    let mut pauses = 0;
    while let Some(pause) = tokio::time::timeout(Duration::from_secs(10), debugger.next_pause()).await.unwrap() {
        pauses += 1;
        println!("{pause:?}\n{:?}\n{:?}\n{:?}", pause.reason(), pause.context().vars(), pause.context());
        pause.resume(Resume::Continue);
    }
    assert_eq!(pauses, 2);
    let report = run.await.unwrap().unwrap();
    println!("{report}");
}

async fn github(slack_api: &SlackSim) {
    let github_api = Receiver::start().await.unwrap();
    let statuses = GitHub::with_url(github_api.url(), Secret::new("ghp_leak_test_token"))
        .log_url("https://deploys.example/runs/{run_id}");
    let slack = Slack::bot(Secret::new(BOT_TOKEN), CHANNEL.0).api_url(slack_api.api_url());
    let (router, runs) = Webhooks::new(Secret::new(WEBHOOK_SECRET))
        .statuses(statuses)
        .notify(slack)
        .route(Route::repository("acme/shop"), |_| {
            Pipeline::builder("release")
                .step(
                    "decrypt",
                    step_fn(|ctx| async move {
                        ctx.add_secret("runtime", Secret::new(RUNTIME));
                        Err(StepError::new(format!("vault said no to {RUNTIME}")))
                    }),
                )
                .build()
                .unwrap()
        })
        .router_with_runs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let mut body: serde_json::Value =
        serde_json::from_str(include_str!("../crates/gantry-github/tests/data/payload.json")).unwrap();
    body["repository"]["full_name"] = "acme/shop".into();
    let body = serde_json::to_vec(&body).unwrap();
    let answer = reqwest::Client::new()
        .post(&url)
        .header("x-github-event", "deployment")
        .header("x-github-delivery", "leak-1")
        .header("x-hub-signature-256", sign_payload(&Secret::new(WEBHOOK_SECRET), &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    let finished = runs.take().pop().unwrap().run.await.unwrap();
    println!("== GitHub");
    println!("{}", finished.report.unwrap());
    for request in github_api.requests() {
        println!("{} {}", request.path, request.body);
    }
    for message in slack_api.messages() {
        println!("{}", message.all_text());
    }
    server.abort();
}
