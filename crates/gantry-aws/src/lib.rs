//! Gantry's AWS accounts: sessions by STS **AssumeRole** (role ARN, external id, session name, duration, session
//! tags), chained from a hub account into spoke accounts, with credentials cached and refreshed before they expire;
//! and **EKS** bearer tokens (`k8s-aws-v1.` + a presigned STS `GetCallerIdentity` URL carrying the cluster's
//! `x-k8s-aws-id` header) for a `kube::Config`; and **ECR** logins (`EcrRegistry`), renewed before they expire, as
//! a credential source of image builds (feature `build`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), gantry_aws::AwsError> {
//! use gantry_aws::{Account, Aws};
//! let hub = Aws::from_environment().await;
//! let deployer = hub.assume(&Account::new("arn:aws:iam::111111111111:role/deployer").external_id("gantry")).await?;
//! let production = deployer.assume(&Account::new("arn:aws:iam::222222222222:role/eks-admin")).await?;
//! let token = production.eks_token("prod-cluster").await?;
//! # let _ = token; Ok(()) }
//! ```

mod account;
mod ecr;
mod eks;
mod error;

pub use account::{Account, Aws, Session};
pub use ecr::{EcrLogin, EcrRegistry};
pub use eks::{EksCluster, EksToken, TOKEN_PREFIX};
pub use error::AwsError;
