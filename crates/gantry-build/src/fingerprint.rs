//! The fingerprint of a build's input: what decides whether a service must be built again.
//!
//! It covers the Containerfile, the target, build arguments, labels, the ids of the build secrets (not their
//! values) and every file of the context that `.containerignore` (else `.dockerignore`) does not exclude: its path, whether it is executable,
//! and its bytes (a symlink by where it points). Two builds with the same fingerprint make the same image from the
//! same base; a changed base image is not seen (pin bases by digest, or rebuild on a schedule).

use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::error::BuildError;
use crate::request::BuildRequest;

/// The fingerprint of `request`'s input, as 64 hex digits.
pub fn fingerprint(request: &BuildRequest) -> Result<String, BuildError> {
    let mut hash = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((value.len() as u64).to_le_bytes());
        hash.update(value);
    };
    field("version", b"gantry-build fingerprint 1");
    let containerfile = std::fs::read(&request.containerfile)
        .map_err(|e| BuildError::io(format!("could not read {}", request.containerfile.display()), e))?;
    field("containerfile", &containerfile);
    field("target", request.target.as_deref().unwrap_or("").as_bytes());
    for (name, value) in &request.build_args {
        field("arg", name.as_bytes());
        field("value", value.as_bytes());
    }
    for (name, value) in &request.labels {
        field("label", name.as_bytes());
        field("value", value.as_bytes());
    }
    for (id, _) in &request.secrets {
        field("secret", id.as_bytes());
    }
    for relative in context_files(&request.context)? {
        let path = request.context.join(&relative);
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| BuildError::io(format!("could not read {}", path.display()), e))?;
        field("path", relative.as_bytes());
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)
                .map_err(|e| BuildError::io(format!("could not read {}", path.display()), e))?;
            field("symlink", target.to_string_lossy().as_bytes());
        } else {
            #[cfg(unix)]
            let executable = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0;
            #[cfg(not(unix))]
            let executable = false;
            field("mode", if executable { b"x" } else { b"-" });
            let bytes =
                std::fs::read(&path).map_err(|e| BuildError::io(format!("could not read {}", path.display()), e))?;
            field("file", &bytes);
        }
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The files of `context` that `.dockerignore` keeps, relative and `/`-separated, sorted: what a builder that is
/// sent its context (the Docker Engine) gets.
pub(crate) fn context_files(context: &Path) -> Result<Vec<String>, BuildError> {
    let ignore = Ignore::read(context)?;
    let mut files = Vec::new();
    walk(context, context, &ignore, &mut files)?;
    files.sort();
    Ok(files)
}

/// Collects the context's files (relative, `/`-separated) that `.dockerignore` keeps.
fn walk(root: &Path, dir: &Path, ignore: &Ignore, files: &mut Vec<String>) -> Result<(), BuildError> {
    let entries = std::fs::read_dir(dir).map_err(|e| BuildError::io(format!("could not list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BuildError::io(format!("could not list {}", dir.display()), e))?;
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        let kind = entry.file_type().map_err(|e| BuildError::io(format!("could not read {}", path.display()), e))?;
        if kind.is_dir() {
            // A directory is walked even when excluded: a later `!pattern` may bring a file inside it back.
            walk(root, &path, ignore, files)?;
        } else if !ignore.excludes(&relative) {
            files.push(relative);
        }
    }
    Ok(())
}

/// The patterns of a `.dockerignore`, read as Docker reads them: the last matching pattern decides, `!` keeps,
/// `*` and `?` stay within a path segment, `**` spans any number of them, and a pattern that matches a directory
/// excludes what is in it.
#[derive(Debug, Default)]
struct Ignore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    /// `.containerignore` if there is one (buildah reads it first), else `.dockerignore`.
    fn read(context: &Path) -> Result<Self, BuildError> {
        for name in [".containerignore", ".dockerignore"] {
            let path = context.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => return Ok(Self::parse(&text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BuildError::io(format!("could not read {}", path.display()), e)),
            }
        }
        Ok(Self::default())
    }

    fn parse(text: &str) -> Self {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (keep, pattern) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let segments = pattern
                    .trim_start_matches("./")
                    .trim_matches('/')
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_owned)
                    .collect();
                (keep, segments)
            })
            .collect();
        Self { patterns }
    }

    fn excludes(&self, relative: &str) -> bool {
        let segments: Vec<&str> = relative.split('/').collect();
        let mut excluded = false;
        for (keep, pattern) in &self.patterns {
            let pattern: Vec<&str> = pattern.iter().map(String::as_str).collect();
            // The path itself, or a directory above it.
            if (1..=segments.len()).any(|n| matches(&pattern, &segments[..n])) {
                excluded = !keep;
            }
        }
        excluded
    }
}

fn matches(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(&"**"), _) => matches(&pattern[1..], path) || (!path.is_empty() && matches(pattern, &path[1..])),
        (Some(p), Some(s)) => segment(p.as_bytes(), s.as_bytes()) && matches(&pattern[1..], &path[1..]),
        _ => false,
    }
}

fn segment(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => segment(&pattern[1..], text) || (!text.is_empty() && segment(pattern, &text[1..])),
        (Some(b'?'), Some(_)) => segment(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => segment(&pattern[1..], &text[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_patterns_read_as_docker_reads_them() {
        let ignore = Ignore::parse("# comment\nnode_modules\n*.log\n**/*.tmp\n!keep.log\ndocs/\n");
        for excluded in ["node_modules", "node_modules/a/b.js", "x.log", "a/b/c.tmp", "c.tmp", "docs/readme.md"] {
            assert!(ignore.excludes(excluded), "{excluded}");
        }
        for kept in ["keep.log", "src/x.log", "src/main.js", "node_modules_x"] {
            assert!(!ignore.excludes(kept), "{kept}");
        }
    }

    #[test]
    fn the_fingerprint_follows_the_files_the_build_sees() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        std::fs::write(ctx.join("Containerfile"), "FROM base\nCOPY . /app\n").unwrap();
        std::fs::write(ctx.join("app.php"), "<?php echo 1;").unwrap();
        std::fs::write(ctx.join(".dockerignore"), "*.log\n").unwrap();
        let request = BuildRequest::new(ctx, ctx.join("Containerfile"));
        let first = fingerprint(&request).unwrap();
        assert_eq!(first.len(), 64);
        std::fs::write(ctx.join("debug.log"), "noise").unwrap();
        assert_eq!(fingerprint(&request).unwrap(), first, "an ignored file changes nothing");
        std::fs::write(ctx.join("app.php"), "<?php echo 2;").unwrap();
        let second = fingerprint(&request).unwrap();
        assert_ne!(second, first, "a changed source file changes it");
        let mut with_arg = request.clone();
        with_arg.build_args.insert("VERSION".into(), "2".into());
        assert_ne!(fingerprint(&with_arg).unwrap(), second, "a build argument changes it");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(ctx.join("app.php"), std::fs::Permissions::from_mode(0o755)).unwrap();
            assert_ne!(fingerprint(&request).unwrap(), second, "the executable bit changes it");
        }
    }
}
