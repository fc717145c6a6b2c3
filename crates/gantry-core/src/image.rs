//! Container image references, read as Docker, containerd and the kubelet read them.
//!
//! `nginx:1.27` names `docker.io/library/nginx:1.27`; `acme/web` names `docker.io/acme/web:latest`;
//! `registry:5000/web:2` names the repository `web` on the registry `registry:5000`, tag `2`. A container runtime
//! reports the normalised form in a pod's `status.containerStatuses[].image` and a digest in `imageID`, so a step that
//! looks for the pods of an image must compare references, not strings.

use std::fmt;

/// Docker Hub, as references name it once normalised.
const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference: `[registry/]repository[:tag][@digest]`.
///
/// ```
/// use gantry_core::ImageRef;
/// let nginx = ImageRef::parse("nginx:1.27").unwrap();
/// assert_eq!(nginx.to_string(), "docker.io/library/nginx:1.27");
/// let web = ImageRef::parse("registry:5000/web").unwrap();
/// assert_eq!((web.registry(), web.repository(), web.tag()), ("registry:5000", "web", None));
/// assert_eq!(web.to_string(), "registry:5000/web:latest");
/// // As the kubelet reports a running container of `nginx:1.27` started by containerd:
/// assert!(nginx.matches_status("docker.io/library/nginx:1.27", "docker.io/library/nginx@sha256:0123abcd"));
/// assert!(!nginx.matches_status("docker.io/library/nginx:1.28", ""));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// A text that is not an image reference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{reference}` is not an image reference: {why}")]
#[non_exhaustive]
pub struct ImageRefError {
    /// The text.
    pub reference: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl ImageRef {
    /// Parses a reference as `docker pull` would, normalising Docker Hub names (`nginx` is
    /// `docker.io/library/nginx`, `index.docker.io` is `docker.io`).
    pub fn parse(reference: &str) -> Result<Self, ImageRefError> {
        let invalid = |why| ImageRefError { reference: reference.to_owned(), why };
        if reference.is_empty() || reference.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it is empty or holds whitespace"));
        }
        let (named, digest) = match reference.split_once('@') {
            Some((named, digest)) => {
                let (algorithm, hex) = digest.split_once(':').ok_or_else(|| invalid("the digest has no algorithm"))?;
                if algorithm.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(invalid("the digest is not `<algorithm>:<hex>`"));
                }
                (named, Some(digest.to_owned()))
            }
            None => (reference, None),
        };
        // A tag follows the last `:` after the last `/` (a `:` before it is a registry's port).
        let last_slash = named.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match named[last_slash..].rfind(':') {
            Some(colon) => {
                let tag = &named[last_slash + colon + 1..];
                let valid = tag.len() <= 128
                    && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                    && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                if !valid {
                    return Err(invalid("the tag is not 1-128 letters, digits, `_`, `.` or `-`"));
                }
                (&named[..last_slash + colon], Some(tag.to_owned()))
            }
            None => (named, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                let registry = if first == "index.docker.io" { DOCKER_HUB } else { first };
                (registry.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
        };
        if !repository.split('/').all(component_ok) {
            return Err(invalid("the repository is not lowercase letters, digits and separators"));
        }
        Ok(Self { registry, repository, tag, digest })
    }

    /// The registry (`docker.io`, `registry:5000`, `123456789012.dkr.ecr.eu-west-1.amazonaws.com`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository within the registry (`library/nginx`, `acme/web`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:...`), if the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The same repository pinned to `digest` (`sha256:<hex>`), without a tag: what a deploy of a pushed build
    /// should name, so that what runs is exactly what was built.
    ///
    /// ```
    /// use gantry_core::ImageRef;
    /// let built = ImageRef::parse("127.0.0.1:5000/shop/web:3.1.0").unwrap();
    /// let digest = format!("sha256:{}", "0f".repeat(32));
    /// assert_eq!(built.pinned(&digest).unwrap().to_string(), format!("127.0.0.1:5000/shop/web@{digest}"));
    /// ```
    pub fn pinned(&self, digest: &str) -> Result<Self, ImageRefError> {
        Self::parse(&format!("{}/{}@{digest}", self.registry, self.repository))
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self, ImageRefError> {
        Self::parse(&format!("{}/{}:{tag}", self.registry, self.repository))
    }

    /// What a deployment of this reference is a version of, for reports: the tag, else the digest's first 12 hex
    /// digits, else `latest` (what a runtime pulls for a bare name).
    pub fn version(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => tag.clone(),
            (None, Some(digest)) => {
                let hex = digest.split_once(':').map_or(digest.as_str(), |(_, hex)| hex);
                hex.chars().take(12).collect()
            }
            (None, None) => "latest".to_owned(),
        }
    }

    /// Whether a container of this reference is the one a pod status reports as running `image` with `image_id`
    /// (`status.containerStatuses[].image` and `.imageID`), the way the kubelet compares them: by registry,
    /// repository and tag (`latest` when a reference has none) once both are normalised, or, for a reference pinned
    /// by digest, by that digest in either. A status whose `image` is a bare image id (`sha256:...`, as some runtimes
    /// report) is compared by the repository its `imageID` names.
    pub fn matches_status(&self, image: &str, image_id: &str) -> bool {
        if let Some(digest) = &self.digest {
            let pinned = |text: &str| text.rsplit_once('@').is_some_and(|(_, d)| d == digest) || text == digest;
            return pinned(image_id) || pinned(image);
        }
        let bare_id = image.split_once(':').is_some_and(|(algorithm, hex)| {
            algorithm == "sha256" && hex.len() >= 12 && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !bare_id && let Ok(reported) = Self::parse(image) {
            return reported.registry == self.registry
                && reported.repository == self.repository
                && reported.tag.as_deref().unwrap_or("latest") == self.tag.as_deref().unwrap_or("latest");
        }
        let id = image_id.rsplit_once("://").map_or(image_id, |(_, rest)| rest);
        Self::parse(id).is_ok_and(|r| r.registry == self.registry && r.repository == self.repository)
    }
}

/// The normalised reference: `docker.io/library/nginx:1.27`, with `:latest` for a bare name.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match (&self.tag, &self.digest) {
            (Some(tag), _) => write!(f, ":{tag}")?,
            (None, None) => f.write_str(":latest")?,
            (None, Some(_)) => {}
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_as_docker_reads_them() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.27", "docker.io/library/nginx:1.27"),
            ("acme/web:2", "docker.io/acme/web:2"),
            ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1"),
            ("registry:5000/web", "registry:5000/web:latest"),
            ("registry:5000/team/web:3.1", "registry:5000/team/web:3.1"),
            ("localhost/web:dev", "localhost/web:dev"),
            ("ghcr.io/acme/api:v1.2.3-rc.1", "ghcr.io/acme/api:v1.2.3-rc.1"),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:abc",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:abc",
            ),
        ];
        for (given, normalised) in cases {
            assert_eq!(ImageRef::parse(given).unwrap().to_string(), normalised, "{given}");
        }
        let digest = format!("sha256:{}", "ab".repeat(32));
        let pinned = ImageRef::parse(&format!("registry:5000/web@{digest}")).unwrap();
        assert_eq!((pinned.tag(), pinned.digest()), (None, Some(digest.as_str())));
        assert_eq!(pinned.version(), "abababababab");
    }

    #[test]
    fn the_version_is_the_tag_not_what_follows_a_port() {
        assert_eq!(ImageRef::parse("registry:5000/web").unwrap().version(), "latest");
        assert_eq!(ImageRef::parse("registry:5000/web:7").unwrap().version(), "7");
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        for bad in ["", "web app", "Web:1", "web:", "web:-x", "web@sha256:xyz", "web@nodigest", "web/:1"] {
            let e = ImageRef::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with(&format!("`{bad}` is not an image reference: ")), "{e}");
        }
    }

    #[test]
    fn statuses_match_the_way_the_kubelet_compares() {
        let nginx = ImageRef::parse("nginx:1.27").unwrap();
        assert!(nginx.matches_status("nginx:1.27", ""), "as docker (dockershim) reported it");
        assert!(nginx.matches_status("docker.io/library/nginx:1.27", "docker.io/library/nginx@sha256:00"));
        assert!(!nginx.matches_status("docker.io/library/nginx:1.28", ""));
        assert!(!nginx.matches_status("ghcr.io/library/nginx:1.27", ""));
        let latest = ImageRef::parse("acme/web").unwrap();
        assert!(latest.matches_status("docker.io/acme/web:latest", ""));
        let digest = format!("sha256:{}", "0f".repeat(32));
        let pinned = ImageRef::parse(&format!("acme/web@{digest}")).unwrap();
        assert!(pinned.matches_status("docker.io/acme/web:2", &format!("docker.io/acme/web@{digest}")));
        assert!(pinned.matches_status("sha256:feed", &format!("docker-pullable://acme/web@{digest}")));
        assert!(!pinned.matches_status("docker.io/acme/web:2", "docker.io/acme/web@sha256:1111"));
        // A runtime that reports the image id: compared by the repository the imageID names.
        let id = format!("sha256:{}", "12".repeat(32));
        assert!(latest.matches_status("sha256:feedbeef0123", &format!("docker.io/acme/web@{id}")));
        assert!(!latest.matches_status("sha256:feedbeef0123", &format!("docker.io/acme/api@{id}")));
    }
}
