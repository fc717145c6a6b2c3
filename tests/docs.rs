//! Every Rust code block of the README and of `docs/` is compiled by `cargo test`: either the Markdown file is
//! included in `src/lib.rs` as doctests, or its blocks are, byte for byte, the files of a test crate under `tests/`
//! (a guide that builds a host crate file by file).

use std::path::{Path, PathBuf};

/// The Rust blocks of a Markdown text: (the fence's info string, the code).
fn rust_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let mut code = String::new();
        for inner in lines.by_ref() {
            if inner == "```" {
                break;
            }
            code.push_str(inner);
            code.push('\n');
        }
        if info == "rust" || info.starts_with("rust,") {
            blocks.push((info.to_owned(), code));
        }
    }
    blocks
}

fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_rust_block_of_the_docs_is_compiled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let mut checked = 0;
    for file in markdown_files(root) {
        let relative = file.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let blocks = rust_blocks(&std::fs::read_to_string(&file).unwrap());
        if blocks.is_empty() {
            continue;
        }
        for (info, _) in &blocks {
            assert!(!info.contains("ignore"), "{relative}: a `{info}` block is never compiled; use `no_run` at most");
        }
        if lib.contains(&format!("include_str!(\"../{relative}\")")) {
            checked += blocks.len();
            continue;
        }
        // A guide that builds a crate: `docs/guides/custom-step.md` -> `tests/custom_step_guide/`.
        let stem = file.file_stem().unwrap().to_string_lossy().replace('-', "_");
        let crate_dir = root.join("tests").join(format!("{stem}_guide"));
        assert!(
            crate_dir.is_dir(),
            "{relative} has Rust blocks that nothing compiles: include it in src/lib.rs's `docs` module, or make its \
             blocks the files of tests/{stem}_guide/"
        );
        for (_, code) in &blocks {
            let first = code.lines().next().unwrap_or_default();
            let file_name = match first.strip_prefix("// src/") {
                Some(name) => name.to_owned(),
                None => match first.strip_prefix("// tests/") {
                    Some(name) => format!("tests_{name}"),
                    None => {
                        panic!("{relative}: a block does not start with `// src/<file>.rs` or `// tests/<file>.rs`")
                    }
                },
            };
            let path = crate_dir.join(&file_name);
            let on_disk = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{relative} shows {first}, but {} is missing: {e}", path.display()));
            assert_eq!(code, &on_disk, "{relative}: the block `{first}` differs from {}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} blocks found");
}

#[test]
fn the_examples_use_only_the_facade() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(root.join("examples")).unwrap().flatten() {
        let path = entry.path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().map(str::trim_start).filter(|l| l.starts_with("use ")) {
            let krate = line["use ".len()..].split("::").next().unwrap_or_default();
            assert!(
                matches!(
                    krate,
                    "gantry" | "std" | "tokio" | "futures" | "serde_json" | "axum" | "reqwest" | "indicatif"
                ),
                "{}: `{line}`: a host gets Gantry's crates, kube and k8s_openapi through `gantry::`",
                path.display()
            );
        }
    }
}
