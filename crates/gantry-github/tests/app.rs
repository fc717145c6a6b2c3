//! GitHub App authentication: the JWT GitHub gets is RS256-signed by the App's key with the claims GitHub checks,
//! the installation token it returns is used and cached, and renewed when it nears its expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gantry_core::{Pipeline, Secret, step_fn};
use gantry_github::{GitHub, Route, Webhooks};
use gantry_testkit::receiver::{Receiver, Recorded};
use hmac::{Hmac, KeyInit, Mac};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;
use tower::ServiceExt;

const KEY: &str = include_str!("data/test-app-key.pem");
const APP_ID: u64 = 424_242;
const WEBHOOK_SECRET: &str = "app-webhook-secret";

/// GitHub's answers: an installation token valid for `valid`, numbered; 201 for statuses.
fn github_app_api(github: &Receiver, valid: Duration) {
    let issued = std::sync::atomic::AtomicU32::new(0);
    github.respond_with(move |request: &Recorded| {
        if request.path.ends_with("/access_tokens") {
            let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let expires = gantry_testkit::rfc3339(SystemTime::now() + valid);
            return Some((201, json!({"token": format!("ghs_token{n}"), "expires_at": expires})));
        }
        None
    });
}

fn public_key() -> Vec<u8> {
    let der: String = KEY.lines().filter(|l| !l.starts_with("-----")).collect();
    let pair = RsaKeyPair::from_der(&STANDARD.decode(der).unwrap()).unwrap();
    ring::signature::KeyPair::public_key(&pair).as_ref().to_vec()
}

/// Checks a JWT as GitHub does: RS256 over `header.claims` with the App's public key, `iss` the App, `iat` in
/// the past, `exp` at most 10 minutes ahead.
fn check_jwt(authorization: &str) -> Value {
    let jwt = authorization.strip_prefix("Bearer ").unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "RS256", "typ": "JWT"}));
    let signed = format!("{}.{}", parts[0], parts[1]);
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key())
        .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .expect("the JWT is signed by the App's key");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (iat, exp) = (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
    assert!(iat <= now && now - iat <= 120, "iat a little in the past: {iat} vs {now}");
    assert!(exp > now && exp - iat <= 600, "exp within GitHub's 10 minutes: {exp}");
    assert_eq!(claims["iss"], APP_ID.to_string());
    claims
}

async fn deliver(app: &axum::Router, delivery: &str) {
    let body = include_bytes!("data/with-installation.payload.json").to_vec();
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let request = Request::post("/")
        .header("x-github-event", "deployment")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", format!("sha256={signature}"))
        .body(Body::from(body))
        .unwrap();
    assert_eq!(app.clone().oneshot(request).await.unwrap().status(), StatusCode::ACCEPTED);
}

fn receiver(api: &str) -> (axum::Router, gantry_github::Runs) {
    receiver_with(GitHub::app(APP_ID, &Secret::new(KEY)).unwrap().api_url(api))
}

fn receiver_with(github: GitHub) -> (axum::Router, gantry_github::Runs) {
    assert!(!format!("{github:?}").contains("PRIVATE KEY"), "the key stays out of Debug");
    Webhooks::new(Secret::new(WEBHOOK_SECRET))
        .statuses(github)
        .route(Route::repository("Codertocat/Hello-World"), |_| {
            Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap()
        })
        .router_with_runs()
}

#[tokio::test]
async fn an_app_installation_token_is_made_from_a_signed_jwt_and_reused_while_it_is_fresh() {
    let github = Receiver::start().await.unwrap();
    github_app_api(&github, Duration::from_secs(3600));
    let (app, runs) = receiver(&github.url());
    for delivery in ["d-1", "d-2"] {
        deliver(&app, delivery).await;
        let finished = runs.take().pop().unwrap().run.await.unwrap();
        assert!(finished.undelivered.is_empty(), "{:?}", finished.undelivered);
    }
    let requests = github.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/app/installations/1/access_tokens",
            "/repos/Codertocat/Hello-World/deployments/145988746/statuses",
            "/repos/Codertocat/Hello-World/deployments/145988746/statuses",
            "/repos/Codertocat/Hello-World/deployments/145988746/statuses",
            "/repos/Codertocat/Hello-World/deployments/145988746/statuses",
        ],
        "one token, from the delivery's installation (1), for four statuses"
    );
    check_jwt(requests[0].header("authorization").unwrap());
    assert!(requests[1..].iter().all(|r| r.header("authorization") == Some("Bearer ghs_token1")));
}

#[tokio::test]
async fn a_token_near_its_expiry_is_renewed_and_a_refused_token_is_reported() {
    let github = Receiver::start().await.unwrap();
    github_app_api(&github, Duration::from_secs(120)); // inside the 5-minute renewal margin
    let (app, runs) = receiver(&github.url());
    deliver(&app, "r-1").await;
    runs.take().pop().unwrap().run.await.unwrap();
    let requests = github.requests();
    let tokens: Vec<_> = requests.iter().filter(|r| r.path.ends_with("/access_tokens")).collect();
    assert_eq!(tokens.len(), 2, "a new token for each status");
    assert_eq!(requests.last().unwrap().header("authorization"), Some("Bearer ghs_token2"));

    let refused = Receiver::start().await.unwrap();
    refused.respond_with(|r: &Recorded| {
        r.path.ends_with("/access_tokens").then(|| (401, json!({"message": "Bad credentials"})))
    });
    let (app, runs) = receiver(&refused.url());
    deliver(&app, "r-2").await;
    let finished = runs.take().pop().unwrap().run.await.unwrap();
    assert!(finished.report.is_some(), "the deployment ran regardless");
    assert!(
        finished.undelivered[0].to_string().contains("GitHub refused an installation token for installation 1: 401"),
        "{:?}",
        finished.undelivered
    );
    assert_eq!(refused.requests().len(), 2, "a refused token is not asked for again within a status");
}

#[tokio::test]
async fn a_token_github_stops_taking_is_replaced_and_runs_starting_together_share_one() {
    let github = Receiver::start().await.unwrap();
    github_app_api(&github, Duration::from_secs(3600));
    let first_token_revoked = |r: &Recorded| {
        (r.path.ends_with("/statuses") && r.header("authorization") == Some("Bearer ghs_token1"))
            .then(|| (401, json!({"message": "Bad credentials"})))
    };
    let tokens = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let issued = std::sync::Arc::clone(&tokens);
    github.respond_with(move |r: &Recorded| {
        if r.path.ends_with("/access_tokens") {
            let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let expires = gantry_testkit::rfc3339(SystemTime::now() + Duration::from_secs(3600));
            return Some((201, json!({"token": format!("ghs_token{n}"), "expires_at": expires})));
        }
        first_token_revoked(r)
    });
    let (app, runs) = receiver(&github.url());
    let deliveries: Vec<_> = (0..10).map(|i| format!("together-{i}")).collect();
    futures::future::join_all(deliveries.iter().map(|d| deliver(&app, d))).await;
    for started in runs.take() {
        let finished = started.run.await.unwrap();
        assert!(finished.undelivered.is_empty(), "{:?}", finished.undelivered);
    }
    assert_eq!(
        tokens.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one token for all ten runs, and one after the 401"
    );
    let last = github.requests().pop().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer ghs_token2"));
}

#[tokio::test]
async fn the_deliverys_installation_comes_first_and_a_hanging_token_request_is_bounded() {
    let github = Receiver::start().await.unwrap();
    github_app_api(&github, Duration::from_secs(3600));
    let configured = GitHub::app(APP_ID, &Secret::new(KEY)).unwrap().api_url(github.url()).installation(99);
    let (app, runs) = receiver_with(configured);
    deliver(&app, "i-1").await;
    runs.take().pop().unwrap().run.await.unwrap();
    assert_eq!(github.requests()[0].path, "/app/installations/1/access_tokens", "the delivery's installation");

    let hanging = Receiver::start().await.unwrap();
    hanging.delay_next(Duration::from_secs(60), 100);
    let github =
        GitHub::app(APP_ID, &Secret::new(KEY)).unwrap().api_url(hanging.url()).timeout(Duration::from_millis(100));
    let (app, runs) = receiver_with(github);
    let started = std::time::Instant::now();
    deliver(&app, "h-1").await;
    let finished = runs.take().pop().unwrap().run.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "bounded: {:?}", started.elapsed());
    assert!(finished.report.is_some_and(|r| r.status == gantry_core::RunStatus::Succeeded));
    assert!(
        finished.undelivered[0]
            .to_string()
            .contains("GitHub did not answer an installation token request within 100ms"),
        "{:?}",
        finished.undelivered
    );
}
