//! EKS bearer tokens: a presigned STS `GetCallerIdentity` URL, as `aws eks get-token` makes them.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;

use tokio::sync::Mutex;

use crate::account::Session;
use crate::error::AwsError;

/// What EKS tokens start with.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// A bearer token for an EKS cluster, and when it stops being accepted (EKS accepts a token 15 minutes).
#[derive(Clone)]
pub struct EksToken {
    /// The token (`k8s-aws-v1.…`): a secret.
    pub token: gantry_core::Secret,
    /// When to get a new one (a minute before EKS stops accepting it).
    pub refresh_at: SystemTime,
}

impl std::fmt::Debug for EksToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksToken").field("token", &self.token).field("refresh_at", &self.refresh_at).finish()
    }
}

impl Session {
    /// A token for the EKS cluster `cluster`: STS `GetCallerIdentity` presigned with this session's credentials for
    /// 60 seconds, signing the `x-k8s-aws-id: <cluster>` header, base64url-encoded without padding.
    pub async fn eks_token(&self, cluster: &str) -> Result<EksToken, AwsError> {
        let creds = self.credentials().await?;
        let region = self.region();
        let url = format!("https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15");
        let host = format!("sts.{region}.amazonaws.com");
        let now = self.now();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(60));
        let identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&region)
            .name("sts")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| AwsError::Signing(e.to_string()))?
            .into();
        let headers = [("host", host.as_str()), ("x-k8s-aws-id", cluster)];
        let request = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
            .map_err(|e| AwsError::Signing(e.to_string()))?;
        let (instructions, _) = sign(request, &params).map_err(|e| AwsError::Signing(e.to_string()))?.into_parts();
        let mut signed = http::Request::builder()
            .uri(&url)
            .header("x-k8s-aws-id", cluster)
            .body(())
            .map_err(|e| AwsError::Signing(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut signed);
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed.uri().to_string());
        Ok(EksToken {
            token: gantry_core::Secret::new(format!("{TOKEN_PREFIX}{encoded}")),
            refresh_at: now + Duration::from_secs(14 * 60),
        })
    }
}

/// An EKS cluster reached with a session's credentials: its API endpoint and certificate authority (as `aws eks
/// describe-cluster` gives them), and a bearer token renewed before EKS stops accepting it.
///
/// The [`Cluster`](gantry_kube::Cluster) it gives puts the current token on every request: a task renews the token
/// every 14 minutes (EKS accepts one for 15) for as long as a client of the connection is alive, so steps built
/// once with the cluster keep working in a host that runs for weeks.
#[derive(Debug)]
pub struct EksCluster {
    session: Session,
    name: String,
    endpoint: String,
    certificate_authority: Option<String>,
    namespace: String,
    renew_every: Duration,
    current: Mutex<Option<gantry_kube::Cluster>>,
}

/// How often a connection's token is renewed, unless told otherwise: a minute before EKS stops accepting it.
const RENEW_EVERY: Duration = Duration::from_secs(14 * 60);

impl EksCluster {
    /// The cluster `name` at `endpoint` (`https://….eks.amazonaws.com`), trusting `certificate_authority` (the
    /// base64 of its PEM, `certificateAuthority.data`; `None` to use the system's roots).
    pub fn new(
        session: Session,
        name: impl Into<String>,
        endpoint: impl Into<String>,
        certificate_authority: Option<String>,
    ) -> Self {
        Self {
            session,
            name: name.into(),
            endpoint: endpoint.into(),
            certificate_authority,
            namespace: "default".into(),
            renew_every: RENEW_EVERY,
            current: Mutex::new(None),
        }
    }

    /// The cluster `name` as EKS describes it (`DescribeCluster`, with the session's credentials in its region):
    /// its API endpoint and certificate authority, so that only the name need be written down. Fails naming the
    /// cluster and the region if EKS does not know it, and saying so if it has no endpoint yet (still `CREATING`).
    pub async fn discover(session: Session, name: impl Into<String>) -> Result<Self, AwsError> {
        let name = name.into();
        let region = session.region();
        let action = format!("describe EKS cluster `{name}` in {region}");
        let client = aws_sdk_eks::Client::new(&session.config().await?);
        let described =
            client.describe_cluster().name(&name).send().await.map_err(|e| crate::account::sdk_error(&action, &e))?;
        let cluster = described
            .cluster
            .ok_or_else(|| AwsError::Unavailable { action: action.clone(), why: "the answer has no cluster".into() })?;
        let endpoint = cluster.endpoint.clone().filter(|e| !e.is_empty()).ok_or_else(|| AwsError::Unavailable {
            action: action.clone(),
            why: format!(
                "the cluster has no endpoint yet (status {})",
                cluster.status.as_ref().map_or("unknown", |s| s.as_str())
            ),
        })?;
        let certificate_authority = cluster.certificate_authority.and_then(|c| c.data);
        tracing::debug!(target: "gantry_aws", cluster = %name, %endpoint, "discovered EKS cluster");
        Ok(Self::new(session, name, endpoint, certificate_authority))
    }

    /// The API endpoint (`https://….eks.amazonaws.com`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The certificate authority (base64 of its PEM), if one was given or discovered.
    pub fn certificate_authority(&self) -> Option<&str> {
        self.certificate_authority.as_deref()
    }

    /// How often the connection's token is renewed (default 14 minutes; EKS accepts a token for 15).
    #[must_use]
    pub fn renew_every(mut self, every: Duration) -> Self {
        self.renew_every = every.max(Duration::from_millis(10));
        self
    }

    /// The default namespace of the connection (default `default`).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// A kube configuration with a fresh token.
    pub async fn config(&self) -> Result<(kube::Config, SystemTime), AwsError> {
        let invalid = |why: String| AwsError::Signing(format!("EKS cluster `{}`: {why}", self.name));
        let uri = self.endpoint.parse::<http::Uri>().map_err(|e| invalid(format!("endpoint: {e}")))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = self.namespace.clone();
        if let Some(ca) = &self.certificate_authority {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(ca.trim())
                .map_err(|_| invalid("the certificate authority is not base64".into()))?;
            config.root_cert = Some(pem_certificates(&pem).map_err(invalid)?);
        }
        let token = self.session.eks_token(&self.name).await?;
        config.auth_info.token = Some(secrecy::SecretString::from(token.token.expose().to_owned()));
        Ok((config, token.refresh_at))
    }

    /// A kubeconfig for command-line tools (Helm, kubectl): the endpoint, the certificate authority, a fresh token and
    /// the namespace, as one context. The token is a secret: see [`gantry_kube::KubeconfigSource`].
    pub async fn kubeconfig(&self) -> Result<gantry_core::Secret, AwsError> {
        let token = self.session.eks_token(&self.name).await?;
        let mut cluster = serde_json::json!({"server": self.endpoint});
        if let Some(ca) = &self.certificate_authority {
            cluster["certificate-authority-data"] = serde_json::json!(ca.trim());
        }
        let config = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": self.name, "cluster": cluster}],
            "users": [{"name": self.name, "user": {"token": token.token.expose()}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": self.name, "namespace": self.namespace}}],
            "current-context": self.name,
        });
        Ok(gantry_core::Secret::new(config.to_string()))
    }

    /// A connection for Gantry's Kubernetes steps, made once: every request it sends carries the current token,
    /// which a task renews in the background (see the type's documentation).
    pub async fn cluster(&self) -> Result<gantry_kube::Cluster, AwsError> {
        let mut current = self.current.lock().await;
        if let Some(cluster) = current.as_ref() {
            return Ok(cluster.clone());
        }
        let (mut config, _) = self.config().await?;
        let token = config.auth_info.token.take().map(|t| secrecy::ExposeSecret::expose_secret(&t).to_owned());
        let header = bearer(&token.unwrap_or_default()).map_err(AwsError::Signing)?;
        let fresh = std::sync::Arc::new(std::sync::RwLock::new(header));
        let namespace = config.default_namespace.clone();
        let client = kube::client::ClientBuilder::try_from(config)
            .map_err(|e| AwsError::Signing(format!("EKS cluster `{}`: {e}", self.name)))?
            .with_layer(&BearerLayer(std::sync::Arc::clone(&fresh)))
            .build();
        renew_in_background(
            self.session.clone(),
            self.name.clone(),
            self.renew_every,
            std::sync::Arc::downgrade(&fresh),
        );
        let cluster = gantry_kube::Cluster::new(client, namespace);
        *current = Some(cluster.clone());
        Ok(cluster)
    }
}

/// `Authorization: Bearer <token>`, marked sensitive (never logged).
fn bearer(token: &str) -> Result<http::HeaderValue, String> {
    let mut value = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

/// Renews the token of a connection every `every` until the connection is gone (its header cell dropped). A failed
/// renewal is tried again after 10 s, and logged; the current token stays until then.
fn renew_in_background(
    session: Session,
    cluster: String,
    every: Duration,
    fresh: std::sync::Weak<std::sync::RwLock<http::HeaderValue>>,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        let mut wait = every;
        loop {
            tokio::time::sleep(wait).await;
            if fresh.strong_count() == 0 {
                return;
            }
            match session.eks_token(&cluster).await.map_err(|e| e.to_string()).and_then(|t| bearer(t.token.expose())) {
                Ok(header) => {
                    let Some(cell) = fresh.upgrade() else { return };
                    *cell.write().unwrap_or_else(|e| e.into_inner()) = header;
                    wait = every;
                }
                Err(e) => {
                    tracing::warn!(cluster = %cluster, error = %e, "could not renew the EKS token; trying again in 10 s");
                    wait = Duration::from_secs(10).min(every);
                }
            }
        }
    });
}

/// Puts the connection's current token on every request.
struct BearerLayer(std::sync::Arc<std::sync::RwLock<http::HeaderValue>>);

impl<S> tower::Layer<S> for BearerLayer {
    type Service = Bearer<S>;

    fn layer(&self, inner: S) -> Bearer<S> {
        Bearer { inner, token: std::sync::Arc::clone(&self.0) }
    }
}

/// A service that sets `Authorization` to the current token before passing a request on.
struct Bearer<S> {
    inner: S,
    token: std::sync::Arc<std::sync::RwLock<http::HeaderValue>>,
}

impl<S, B> tower::Service<http::Request<B>> for Bearer<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let token = self.token.read().unwrap_or_else(|e| e.into_inner()).clone();
        request.headers_mut().insert(http::header::AUTHORIZATION, token);
        self.inner.call(request)
    }
}

/// The DER certificates of a PEM bundle.
fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the certificate authority is not PEM text".to_owned())?;
    let mut certificates = Vec::new();
    let mut body = None::<String>;
    for line in text.lines().map(str::trim) {
        match (line, body.as_mut()) {
            ("-----BEGIN CERTIFICATE-----", _) => body = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b64)) => {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|_| "a certificate that is not base64".to_owned())?;
                certificates.push(der);
                body = None;
            }
            (line, Some(b64)) => b64.push_str(line),
            _ => {}
        }
    }
    if certificates.is_empty() {
        return Err("no certificate in the certificate authority".into());
    }
    Ok(certificates)
}

#[async_trait::async_trait]
impl gantry_kube::KubeconfigSource for EksCluster {
    async fn kubeconfig(&self) -> Result<gantry_core::Secret, gantry_core::StepError> {
        EksCluster::kubeconfig(self).await.map_err(|e| gantry_core::StepError::new(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundles_become_der_certificates() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAEC\nAwQ=\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBQY=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificates(pem).unwrap(), vec![vec![0, 1, 2, 3, 4], vec![5, 6]]);
        assert!(pem_certificates(b"nothing here").is_err());
    }
}
