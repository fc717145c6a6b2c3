//! The resource types the simulated API server serves: built-in ones and custom ones a test registers.

/// A resource type the simulator serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, empty for the core group.
    pub group: String,
    /// API version (`v1`).
    pub version: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Plural name used in paths (`deployments`).
    pub plural: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether the type has a `status` subresource (status is then written only through it).
    pub status: bool,
    /// Short names kubectl accepts (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all` for what `kubectl get all` shows).
    pub categories: Vec<String>,
    /// Whether the server keeps `metadata.generation` (workloads and custom resources; not ConfigMaps or Pods).
    pub generation: bool,
}

impl ResourceType {
    /// A namespaced custom resource without a status subresource, e.g. Gateway API's HTTPRoute:
    /// `ResourceType::custom("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")`.
    pub fn custom(group: &str, version: &str, kind: &str, plural: &str) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced: true,
            status: false,
            short_names: Vec::new(),
            categories: Vec::new(),
            generation: true,
        }
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The singular name: the kind in lower case.
    pub fn singular(&self) -> String {
        self.kind.to_lowercase()
    }
}

fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    status: bool,
    short: &[&str],
) -> ResourceType {
    let in_all = matches!(kind, "Pod" | "Service" | "Deployment" | "ReplicaSet" | "Job");
    ResourceType {
        group: group.to_owned(),
        version: version.to_owned(),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
        namespaced,
        status,
        short_names: short.iter().map(|s| (*s).to_owned()).collect(),
        categories: if in_all { vec!["all".to_owned()] } else { Vec::new() },
        generation: matches!(kind, "Deployment" | "ReplicaSet" | "Job"),
    }
}

/// The types every simulated cluster serves.
pub(crate) fn builtins() -> Vec<ResourceType> {
    vec![
        builtin("", "v1", "Namespace", "namespaces", false, true, &["ns"]),
        builtin("", "v1", "Pod", "pods", true, true, &["po"]),
        builtin("", "v1", "Service", "services", true, true, &["svc"]),
        builtin("", "v1", "ConfigMap", "configmaps", true, false, &["cm"]),
        builtin("", "v1", "Secret", "secrets", true, false, &[]),
        builtin("", "v1", "Event", "events", true, false, &["ev"]),
        builtin("", "v1", "ServiceAccount", "serviceaccounts", true, false, &["sa"]),
        builtin("apps", "v1", "Deployment", "deployments", true, true, &["deploy"]),
        builtin("apps", "v1", "ReplicaSet", "replicasets", true, true, &["rs"]),
        builtin("batch", "v1", "Job", "jobs", true, true, &[]),
        builtin("", "v1", "Node", "nodes", false, true, &["no"]),
        builtin("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", false, false, &[]),
    ]
}
