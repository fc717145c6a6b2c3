//! The errors of AWS accounts.

/// What went wrong with an AWS account or token. Credentials never appear in these errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AwsError {
    /// A role ARN is not of the form `arn:<partition>:iam::<12-digit account>:role/<name>`.
    #[error("`{0}` is not an IAM role ARN (arn:aws:iam::123456789012:role/name)")]
    MalformedArn(String),
    /// AWS refused (STS or EKS): AccessDenied, an expired token, a bad external id, a cluster that does not
    /// exist, ...
    #[error("AWS refused to {action}: {code}: {message}")]
    Refused {
        /// What was being done (`assume arn:…`).
        action: String,
        /// The AWS error code (`AccessDenied`, `ExpiredToken`, `ValidationError`).
        code: String,
        /// AWS's message.
        message: String,
    },
    /// AWS (STS or EKS) could not be reached, or answered something unexpected.
    #[error("AWS failed to {action}: {why}")]
    Unavailable {
        /// What was being done.
        action: String,
        /// Why.
        why: String,
    },
    /// Signing failed.
    #[error("could not sign the EKS token request: {0}")]
    Signing(String),
}

impl From<AwsError> for gantry_core::StepError {
    fn from(e: AwsError) -> Self {
        let transient = matches!(e, AwsError::Unavailable { .. });
        let step = gantry_core::StepError::new(e.to_string());
        if transient { step.retryable() } else { step }
    }
}
