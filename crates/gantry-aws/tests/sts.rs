//! Accounts against a real STS emulator (`moto_server`, started per test on loopback; `.ci/test-all` installs it),
//! and EKS tokens checked by recomputing their SigV4 signature independently (moto does not check signatures).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use gantry_aws::{Account, Aws, AwsError, TOKEN_PREFIX};
use gantry_testkit::moto::MotoServer;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The hub account: static test credentials against moto (never the instance metadata service).
async fn hub(moto: &MotoServer) -> Aws {
    Aws::with_static_credentials("AKIDHUBBASE00000000", "hub-secret", "us-east-1", Some(moto.url()))
}

#[tokio::test]
#[ignore = "needs moto: run bash .ci/test-all"]
async fn assume_role_a_two_hop_chain_and_refresh() {
    let moto = MotoServer::start().await.unwrap();
    let aws = hub(&moto).await;
    let deployer = aws
        .assume(&Account::new("arn:aws:iam::111111111111:role/deployer").external_id("gantry").tag("team", "sre"))
        .await
        .unwrap();
    let arn = deployer.caller_arn().await.unwrap();
    assert!(arn.ends_with(":assumed-role/deployer/gantry") && arn.contains("111111111111"), "{arn}");

    let spoke = deployer
        .assume(&Account::new("arn:aws:iam::222222222222:role/eks-admin").session_name("release-42"))
        .await
        .unwrap();
    let arn = spoke.caller_arn().await.unwrap();
    assert!(arn.ends_with(":assumed-role/eks-admin/release-42") && arn.contains("222222222222"), "{arn}");

    // Cached while fresh; fetched again when within the refresh margin of expiry.
    let (a, b) = (spoke.credentials().await.unwrap(), spoke.credentials().await.unwrap());
    assert_eq!(a.access_key_id(), b.access_key_id(), "cached");
    let eager = spoke.clone().refresh_before(Duration::from_secs(2 * 3600));
    let (c, d) = (eager.credentials().await.unwrap(), eager.credentials().await.unwrap());
    assert_ne!(c.access_key_id(), d.access_key_id(), "refreshed: the cached ones expire within the margin");
    assert!(!format!("{a:?} {deployer:?}").contains(a.secret_access_key()), "secrets stay out of Debug");
}

#[tokio::test]
async fn a_malformed_role_arn_is_refused_before_any_call() {
    let aws = Aws::with_static_credentials("AKID", "secret", "us-east-1", Some("http://127.0.0.1:9"));
    match aws.assume(&Account::new("arn:aws:iam::1234:role/short-account")).await {
        Err(e @ AwsError::MalformedArn(_)) => assert!(e.to_string().contains("arn:aws:iam::1234:role/short-account")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_sts_is_reported_as_unavailable() {
    let aws = Aws::with_static_credentials("AKID", "secret", "us-east-1", Some("http://127.0.0.1:9"));
    match aws.assume(&Account::new("arn:aws:iam::123456789012:role/deployer")).await {
        Err(AwsError::Unavailable { action, .. }) => {
            assert!(action.contains("assume arn:aws:iam::123456789012:role/deployer"))
        }
        other => panic!("{other:?}"),
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
#[ignore = "needs moto: run bash .ci/test-all"]
async fn an_eks_token_is_a_correctly_signed_presigned_url() {
    let moto = MotoServer::start().await.unwrap();
    let session = hub(&moto).await.assume(&Account::new("arn:aws:iam::111111111111:role/eks-admin")).await.unwrap();
    let creds = session.credentials().await.unwrap();
    let token = session.eks_token("prod-cluster").await.unwrap();
    assert_eq!(format!("{token:?}").matches("k8s-aws-v1").count(), 0, "the token is a secret: {token:?}");
    let encoded = token.token.expose().strip_prefix(TOKEN_PREFIX).expect("the k8s-aws-v1. prefix");
    assert!(!encoded.contains('='), "base64url without padding");
    let url = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
    let (base, query) = url.split_once('?').unwrap();
    assert_eq!(base, "https://sts.us-east-1.amazonaws.com/");
    let params: BTreeMap<&str, &str> = query.split('&').map(|kv| kv.split_once('=').unwrap()).collect();
    assert_eq!(params["Action"], "GetCallerIdentity");
    assert_eq!(params["Version"], "2011-06-15");
    assert_eq!(params["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
    assert_eq!(params["X-Amz-Expires"], "60");
    assert_eq!(params["X-Amz-SignedHeaders"], "host%3Bx-k8s-aws-id");
    let date = params["X-Amz-Date"];
    let scope = format!("{}/us-east-1/sts/aws4_request", &date[..8]);
    assert_eq!(params["X-Amz-Credential"], format!("{}%2F{}", creds.access_key_id(), scope.replace('/', "%2F")));
    assert!(params.contains_key("X-Amz-Security-Token"), "the assumed role's session token is signed in");

    // Recompute the signature: canonical request, string to sign, derived key (SigV4, presigned GET).
    let canonical_query: Vec<String> =
        params.iter().filter(|(k, _)| **k != "X-Amz-Signature").map(|(k, v)| format!("{k}={v}")).collect();
    let empty = hex(&Sha256::digest(b""));
    let canonical = format!(
        "GET\n/\n{}\nhost:sts.us-east-1.amazonaws.com\nx-k8s-aws-id:prod-cluster\n\nhost;x-k8s-aws-id\n{empty}",
        canonical_query.join("&")
    );
    let to_sign = format!("AWS4-HMAC-SHA256\n{date}\n{scope}\n{}", hex(&Sha256::digest(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{}", creds.secret_access_key()).as_bytes(), &date[..8]);
    for part in ["us-east-1", "sts", "aws4_request"] {
        key = hmac(&key, part);
    }
    assert_eq!(params["X-Amz-Signature"], hex(&hmac(&key, &to_sign)), "the signature verifies");
    assert!(
        token.refresh_at > std::time::SystemTime::now() + Duration::from_secs(13 * 60),
        "good for about 14 minutes"
    );
}

/// An STS that refuses, as AWS does (an XML error body): the error says which refusal it was.
async fn refusing_sts(code: &'static str, message: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>0</RequestId></ErrorResponse>"
    );
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { (axum::http::StatusCode::FORBIDDEN, [("content-type", "text/xml")], body) }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test]
async fn sts_refusals_say_which_they_are() {
    for (code, message) in [
        ("AccessDenied", "User: arn:aws:iam::111111111111:user/ci is not authorized to perform: sts:AssumeRole"),
        ("ExpiredToken", "The security token included in the request is expired"),
    ] {
        let url = refusing_sts(code, message).await;
        let aws = Aws::with_static_credentials("AKID", "secret", "us-east-1", Some(&url));
        match aws.assume(&Account::new("arn:aws:iam::222222222222:role/deployer")).await {
            Err(e @ AwsError::Refused { .. }) => {
                let shown = e.to_string();
                assert!(shown.contains(code) && shown.contains(message), "{shown}");
                assert!(shown.contains("assume arn:aws:iam::222222222222:role/deployer"), "{shown}");
                assert!(!shown.contains("secret"), "{shown}");
            }
            other => panic!("{code}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto: run bash .ci/test-all"]
async fn an_eks_connection_talks_to_the_cluster_with_its_token() {
    use k8s_openapi::api::core::v1::Namespace;
    let moto = MotoServer::start().await.unwrap();
    let session = hub(&moto).await.assume(&Account::new("arn:aws:iam::111111111111:role/eks-admin")).await.unwrap();
    let sim = gantry_testkit::kube::ClusterSim::start().await.unwrap();
    let eks = gantry_aws::EksCluster::new(session, "sim", sim.url(), None);
    let (config, _) = eks.config().await.unwrap();
    use secrecy::ExposeSecret;
    assert!(config.auth_info.token.as_ref().unwrap().expose_secret().starts_with(TOKEN_PREFIX));
    let cluster = eks.cluster().await.unwrap();
    let namespaces: kube::Api<Namespace> = kube::Api::all(cluster.client().clone());
    assert!(namespaces.list(&Default::default()).await.unwrap().items.len() >= 3, "the kube client works with it");
    assert!(!format!("{cluster:?} {eks:?}").contains(TOKEN_PREFIX), "no token in Debug");
}

/// The kubeconfig an EKS cluster makes for command-line tools (Helm, kubectl): its endpoint and authority, a fresh
/// token, its namespace, one current context; the token never shows in `Debug`.
#[tokio::test]
#[ignore = "needs moto: run bash .ci/test-all"]
async fn an_eks_cluster_makes_a_kubeconfig_for_tools() {
    let moto = MotoServer::start().await.unwrap();
    let session = hub(&moto).await.assume(&Account::new("arn:aws:iam::111111111111:role/eks-admin")).await.unwrap();
    let eks = gantry_aws::EksCluster::new(
        session,
        "prod",
        "https://abc.gr7.eu-west-1.eks.amazonaws.com",
        Some("QUJD".into()),
    )
    .namespace("web");
    let kubeconfig = eks.kubeconfig().await.unwrap();
    assert!(!format!("{kubeconfig:?}").contains(TOKEN_PREFIX), "the secret's Debug hides the token");
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig.expose()).unwrap();
    let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some("https://abc.gr7.eu-west-1.eks.amazonaws.com"));
    assert_eq!(cluster.certificate_authority_data.as_deref(), Some("QUJD"));
    let token = parsed.auth_infos[0].auth_info.as_ref().unwrap().token.as_ref().unwrap();
    assert!(secrecy::ExposeSecret::expose_secret(token).starts_with(TOKEN_PREFIX));
    assert_eq!(parsed.current_context.as_deref(), Some("prod"));
    assert_eq!(parsed.contexts[0].context.as_ref().unwrap().namespace.as_deref(), Some("web"));
}

/// A clock a test moves forward.
#[derive(Clone, Default)]
struct TestClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl TestClock {
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now() + Duration::from_secs(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
#[ignore = "needs moto: run bash .ci/test-all"]
async fn a_chained_role_keeps_working_across_several_expiries_of_both_sessions() {
    let moto = MotoServer::start().await.unwrap();
    let clock = TestClock::default();
    let time = clock.clone();
    let aws = hub(&moto).await.clock(move || time.now());
    let hour = Duration::from_secs(3600);
    let deployer = aws.assume(&Account::new("arn:aws:iam::111111111111:role/deployer").duration(hour)).await.unwrap();
    let spoke =
        deployer.assume(&Account::new("arn:aws:iam::222222222222:role/eks-admin").duration(hour)).await.unwrap();
    let mut spoke_keys = vec![spoke.credentials().await.unwrap().access_key_id().to_owned()];
    // A host that runs for six hours, a look every 50 minutes.
    for _ in 0..7 {
        clock.advance(Duration::from_secs(50 * 60));
        let parent_expired = deployer.expires_at().await.unwrap() <= clock.now() + Duration::from_secs(300);
        // The spoke is asked first: it renews, and its parent renews through it.
        let key = spoke.credentials().await.unwrap().access_key_id().to_owned();
        if parent_expired {
            assert!(
                deployer.expires_at().await.unwrap() > clock.now() + Duration::from_secs(300),
                "the parent was renewed when the spoke needed it"
            );
        }
        assert!(spoke.expires_at().await.unwrap() > clock.now(), "the spoke's credentials are current");
        let arn = spoke.caller_arn().await.unwrap();
        assert!(arn.ends_with(":assumed-role/eks-admin/gantry"), "{arn}");
        // An EKS token signed now, at the session's time.
        let token = spoke.eks_token("prod").await.unwrap();
        assert!(token.refresh_at > clock.now());
        spoke_keys.push(key);
    }
    spoke_keys.dedup();
    // One-hour credentials renewed 5 minutes before they expire, looked at every 50 minutes: at 100, 200 and 300.
    assert_eq!(spoke_keys.len(), 4, "renewed three times: {spoke_keys:?}");
}

/// `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`) of an EKS bearer token (`Bearer k8s-aws-v1.<base64url of the presigned URL>`).
fn signed_at(authorization: &str) -> String {
    let token = authorization.strip_prefix("Bearer ").expect("a bearer token");
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.strip_prefix(TOKEN_PREFIX).expect("an EKS token"))
        .unwrap();
    let url = String::from_utf8(url).unwrap();
    let at = url.split(['?', '&']).find_map(|p| p.strip_prefix("X-Amz-Date=")).expect("X-Amz-Date");
    at.to_owned()
}

/// `time` as `YYYYMMDDTHHMMSSZ`, as SigV4 writes it.
fn amz_date(time: std::time::SystemTime) -> String {
    gantry_core::time::rfc3339(time).replace(['-', ':'], "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto: run bash .ci/test-all"]
async fn a_long_lived_eks_connection_sends_a_current_token_on_every_request() {
    use k8s_openapi::api::core::v1::Namespace;
    let moto = MotoServer::start().await.unwrap();
    let clock = TestClock::default();
    let time = clock.clone();
    let aws = hub(&moto).await.clock(move || time.now());
    let session = aws.assume(&Account::new("arn:aws:iam::111111111111:role/eks-admin")).await.unwrap();
    let api = gantry_testkit::receiver::Receiver::start().await.unwrap();
    api.respond_with(|_| {
        Some((200, serde_json::json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {}, "items": []})))
    });
    // Renewed every 50 ms of real time here (14 minutes by default); the session's clock jumps 20 minutes a round,
    // past the 15 minutes EKS accepts a token for.
    let eks = gantry_aws::EksCluster::new(session, "prod", api.url(), None).renew_every(Duration::from_millis(50));
    // Built once, as a host builds its steps once, and used for two hours.
    let cluster = eks.cluster().await.unwrap();
    let namespaces: kube::Api<Namespace> = kube::Api::all(cluster.client().clone());
    let mut dates = Vec::new();
    for round in 0..6 {
        if round > 0 {
            clock.advance(Duration::from_secs(20 * 60));
        }
        let oldest = amz_date(clock.now() - Duration::from_secs(15 * 60));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let date = loop {
            namespaces.list(&Default::default()).await.unwrap();
            let sent = api.requests().last().unwrap().header("authorization").unwrap().to_owned();
            let date = signed_at(&sent);
            if date >= oldest {
                break date;
            }
            assert!(std::time::Instant::now() < deadline, "round {round}: still sending a token from {date}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        dates.push(date);
    }
    assert!(dates.windows(2).all(|w| w[0] < w[1]), "a newer token each round: {dates:?}");
    // The same connection all along: one client, never rebuilt.
    assert_eq!(eks.cluster().await.unwrap().client().default_namespace(), cluster.client().default_namespace());
    assert!(!format!("{cluster:?} {eks:?}").contains(TOKEN_PREFIX), "no token in Debug");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto: run bash .ci/test-all"]
async fn an_eks_cluster_is_discovered_by_name() {
    let moto = MotoServer::start().await.unwrap();
    let session = hub(&moto).await.assume(&Account::new("arn:aws:iam::111111111111:role/eks-admin")).await.unwrap();
    // The cluster exists in EKS (moto's), made as `aws eks create-cluster` would.
    let eks = aws_sdk_eks::Client::new(&session.config().await.unwrap());
    let vpc = aws_sdk_eks::types::VpcConfigRequest::builder().subnet_ids("subnet-0a1b2c3d").build();
    eks.create_cluster()
        .name("prod")
        .role_arn("arn:aws:iam::111111111111:role/eks-service")
        .resources_vpc_config(vpc)
        .send()
        .await
        .unwrap();
    let described = eks.describe_cluster().name("prod").send().await.unwrap().cluster.unwrap();

    let found = gantry_aws::EksCluster::discover(session.clone(), "prod").await.unwrap();
    assert_eq!(Some(found.endpoint()), described.endpoint.as_deref());
    assert!(found.endpoint().starts_with("https://") && found.endpoint().contains(".eks.amazonaws.com"));
    let ca = described.certificate_authority.and_then(|c| c.data);
    assert!(ca.as_deref().is_some_and(|c| !c.is_empty()));
    assert_eq!(found.certificate_authority(), ca.as_deref());

    let missing = gantry_aws::EksCluster::discover(session, "staging").await.unwrap_err().to_string();
    assert!(missing.contains("describe EKS cluster `staging` in us-east-1"), "{missing}");
    assert!(missing.contains("ResourceNotFoundException"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto_server: run bash .ci/test-all"]
async fn an_ecr_login_comes_from_the_assumed_role_and_serves_image_builds() {
    let moto = MotoServer::start().await.unwrap();
    let session = hub(&moto).await.assume(&Account::new("arn:aws:iam::222222222222:role/builder")).await.unwrap();
    let ecr = gantry_aws::EcrRegistry::new(session, "222222222222");
    assert_eq!(ecr.host(), "222222222222.dkr.ecr.us-east-1.amazonaws.com");
    let login = ecr.login().await.unwrap();
    assert_eq!(login.registry, ecr.host(), "the registry ECR names is the one the references name");
    assert_eq!(login.username, "AWS");
    assert_eq!(login.password.expose(), "222222222222-auth-token", "moto's token for the account");
    assert!(!format!("{login:?}").contains("auth-token"), "the token is masked in Debug");

    // As a credential source of image builds (feature `build`): fresh at each build.
    #[cfg(feature = "build")]
    {
        let host = ecr.host().to_owned();
        let auth = gantry_build::RegistryAuth::new().source(ecr);
        let (user, password) = auth.resolve().await.unwrap().credentials_for(&host).unwrap().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("AWS", "222222222222-auth-token"));
    }
}
