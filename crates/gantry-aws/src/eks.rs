//! EKS bearer tokens: a presigned STS `GetCallerIdentity` URL, as `aws eks get-token` makes them.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;

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
