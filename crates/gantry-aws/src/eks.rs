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
        let now = SystemTime::now();
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
#[derive(Debug)]
pub struct EksCluster {
    session: Session,
    name: String,
    endpoint: String,
    certificate_authority: Option<String>,
    namespace: String,
    current: Mutex<Option<(gantry_kube::Cluster, SystemTime)>>,
}

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
            current: Mutex::new(None),
        }
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

    /// A connection for Gantry's Kubernetes steps; the same one until its token is due for renewal, then a new one.
    pub async fn cluster(&self) -> Result<gantry_kube::Cluster, AwsError> {
        let mut current = self.current.lock().await;
        if let Some((cluster, refresh_at)) = current.as_ref()
            && SystemTime::now() < *refresh_at
        {
            return Ok(cluster.clone());
        }
        let (config, refresh_at) = self.config().await?;
        let cluster = gantry_kube::Cluster::from_config(config).map_err(|e| AwsError::Signing(e.to_string()))?;
        *current = Some((cluster.clone(), refresh_at));
        Ok(cluster)
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
