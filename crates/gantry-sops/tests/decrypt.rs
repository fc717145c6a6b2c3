//! Decrypting real SOPS files (made by sops 3.11.0 with age, and the upstream fixtures), and what must fail.

use gantry_sops::{Decryptor, Document, Format, Identities, SopsError, Value};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DATA}{name}")).unwrap()
}

fn key(n: u8) -> Identities {
    Identities::parse(&read(&format!("key{n}.txt"))).unwrap()
}

fn decrypt(name: &str, keys: Identities) -> Result<Document, SopsError> {
    Decryptor::new(keys)
        .decrypt(&read(name), Format::from_path(std::path::Path::new(name.trim_end_matches(".bin.json"))))
}

/// Values equal as sops prints them: numbers by value (sops' JSON store keeps 5432 as a float).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        (Value::Seq(x), Value::Seq(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (x, y) => x == y,
    }
}

fn plain_yaml() -> Value {
    serde_saphyr::from_str(&read("plain.yaml")).unwrap()
}

fn show(v: &Value) -> String {
    serde_json::to_string(&v.to_json()).unwrap()
}

#[test]
fn yaml_with_every_value_type_and_a_comment_decrypts_to_the_plaintext() {
    let document = decrypt("secrets.enc.yaml", key(1)).unwrap();
    let got = &document.documents()[0];
    assert!(same(got, &plain_yaml()), "{} vs {}", show(got), show(&plain_yaml()));
    assert_eq!(got.get(&["db", "port"]), Some(&Value::Int(5432)));
    assert_eq!(got.get(&["db", "enabled"]), Some(&Value::Bool(true)));
    assert_eq!(got.get(&["db", "ratio"]), Some(&Value::Float(0.75)));
    assert_eq!(document.comments(), [" a comment"]);
    assert_eq!(
        document.get(&["note_unencrypted"]).unwrap().expose(),
        "visible",
        "unencrypted_suffix values pass through"
    );
}

#[test]
fn json_dotenv_ini_and_binary_decrypt_to_the_plaintext() {
    let json: Value = serde_json::from_str(&read("plain.json")).unwrap();
    let got = decrypt("secrets.enc.json", key(1)).unwrap();
    assert!(same(&got.documents()[0], &json), "{}", show(&got.documents()[0]));

    let env = decrypt("secrets.enc.env", key(1)).unwrap();
    let lines: Vec<String> = env.secrets().iter().map(|(k, v)| format!("{k}={}", v.expose())).collect();
    assert_eq!(lines.join("\n") + "\n", read("plain.env"));

    let ini = decrypt("secrets.enc.ini", key(1)).unwrap();
    assert_eq!(ini.get(&["db", "user"]).unwrap().expose(), "deploy");
    assert_eq!(ini.get(&["db", "password"]).unwrap().expose(), "s3cr3t-p@ss");

    let binary = Decryptor::new(key(1)).decrypt(&read("secrets.enc.bin.json"), Format::Binary).unwrap();
    assert_eq!(binary.get(&["data"]).unwrap().expose(), read("plain.bin"));
}

#[test]
fn several_recipients_regexes_mac_only_and_shamir_key_groups() {
    for n in [1, 2] {
        let got = decrypt("multi-recipient.enc.yaml", key(n)).unwrap();
        assert!(same(&got.documents()[0], &plain_yaml()), "key {n}");
    }
    for name in ["encrypted-regex.enc.yaml", "mac-only-encrypted.enc.yaml"] {
        let got = decrypt(name, key(1)).unwrap();
        assert!(same(&got.documents()[0], &plain_yaml()), "{name}: {}", show(&got.documents()[0]));
    }
    let both = key(1).with(&read("key2.txt")).unwrap();
    let got = decrypt("keygroups-shamir.enc.yaml", both).unwrap();
    assert!(same(&got.documents()[0], &plain_yaml()));
    match decrypt("keygroups-shamir.enc.yaml", key(1)) {
        Err(SopsError::NotEnoughKeyGroups { threshold: 2, groups: 2, opened: 1 }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn pgp_files_are_refused_as_unsupported() {
    for name in ["upstream/example.yaml", "upstream/example.json", "upstream/functional-tests/res/no_mac.yaml"] {
        let format = Format::from_path(std::path::Path::new(name));
        match Decryptor::new(key(1)).decrypt(&read(name), format) {
            Err(e @ SopsError::Unsupported(_)) => assert!(e.to_string().contains("pgp"), "{e}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// The file with one line changed.
fn with_line(name: &str, from: &str, to: &str) -> String {
    let text = read(name);
    assert!(text.contains(from), "{from}");
    text.replacen(from, to, 1)
}

fn assert_no_plaintext(e: &SopsError) {
    let shown = format!("{e} {e:?}");
    for secret in ["deploy", "s3cr3t", "5432"] {
        assert!(!shown.contains(secret), "plaintext in the error: {shown}");
    }
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines().find(|l| l.trim_start().starts_with(key)).unwrap().split_once(": ").unwrap().1
}

#[test]
fn tampering_moving_and_wrong_keys_fail_with_the_right_error_and_no_plaintext() {
    let text = read("secrets.enc.yaml");
    let yaml = |t: &str| Decryptor::new(key(1)).decrypt(t, Format::Yaml);

    // A flipped byte of ciphertext.
    let password = field(&text, "password:");
    let data = password.split("data:").nth(1).unwrap().split(',').next().unwrap();
    let flipped = format!("{}{}", if data.starts_with('A') { "B" } else { "A" }, &data[1..]);
    let e = yaml(&text.replacen(data, &flipped, 1)).unwrap_err();
    assert!(matches!(&e, SopsError::Tampered { path } if path == "db.password"), "{e}");
    assert_no_plaintext(&e);

    // A value moved to another key: user's ciphertext under password.
    let user = field(&text, "user:");
    let e = yaml(&text.replacen(password, user, 1)).unwrap_err();
    assert!(matches!(&e, SopsError::Tampered { path } if path == "db.password"), "{e}");
    assert_no_plaintext(&e);

    // A tampered MAC.
    let mac = field(&text, "mac:");
    let mac_data = mac.split("data:").nth(1).unwrap().split(',').next().unwrap();
    let e = yaml(&text.replacen(mac_data, &format!("A{}", &mac_data[1..]), 1)).unwrap_err();
    assert!(matches!(e, SopsError::MacMismatch), "{e}");

    // A plain value changed, or an encrypted value removed: the values no longer match the MAC.
    let e = yaml(&with_line("secrets.enc.yaml", "note_unencrypted: visible", "note_unencrypted: edited")).unwrap_err();
    assert!(matches!(e, SopsError::MacMismatch), "{e}");
    let without_ratio: String =
        text.lines().filter(|l| !l.trim_start().starts_with("ratio:")).map(|l| format!("{l}\n")).collect();
    assert!(matches!(yaml(&without_ratio).unwrap_err(), SopsError::MacMismatch));

    // No MAC at all: refused unless allowed.
    let no_mac = text.replacen(mac, "\"\"", 1);
    assert!(matches!(yaml(&no_mac).unwrap_err(), SopsError::NoMac));
    assert!(Decryptor::new(key(1)).allow_missing_mac().decrypt(&no_mac, Format::Yaml).is_ok());

    // The wrong key: the error lists what was tried and what the file wants, public keys only.
    let e = yaml(&text).map(|_| ()).and(Decryptor::new(key(2)).decrypt(&text, Format::Yaml).map(|_| ())).unwrap_err();
    match &e {
        SopsError::NoMatchingIdentity { tried, recipients } => {
            assert_eq!(tried, &key(2).recipients());
            assert_eq!(recipients, &key(1).recipients());
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.to_string().contains("AGE-SECRET-KEY"), "{e}");

    // A malformed value names its path.
    let e = yaml(&text.replacen(",type:str]", ",type:blob]", 1)).unwrap_err();
    assert!(matches!(&e, SopsError::Malformed { path, .. } if path == "db.user"), "{e}");
}

#[test]
fn decrypted_values_never_show_in_debug() {
    let document = decrypt("secrets.enc.yaml", key(1)).unwrap();
    let shown = format!("{document:?} {:?} {:?}", document.secrets(), key(1));
    for secret in ["deploy", "s3cr3t-p@ss", "5432", "0.75", "a comment", "AGE-SECRET-KEY"] {
        assert!(!shown.contains(secret), "{secret} shows: {shown}");
    }
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        #[test]
        fn on_arbitrary_input(text in ".{0,400}") {
            for format in [Format::Yaml, Format::Json, Format::Dotenv, Format::Ini, Format::Binary] {
                let _ = Decryptor::new(key(1)).decrypt(&text, format);
            }
        }

        #[test]
        fn on_mutated_files(at in 0usize..4000, byte in any::<u8>(), name in prop::sample::select(vec!["secrets.enc.yaml", "secrets.enc.json", "secrets.enc.env", "secrets.enc.ini", "keygroups-shamir.enc.yaml"])) {
            let mut bytes = read(name).into_bytes();
            let i = at % bytes.len();
            bytes[i] = byte;
            if let Ok(text) = String::from_utf8(bytes) {
                let keys = key(1).with(&read("key2.txt")).unwrap();
                let format = Format::from_path(std::path::Path::new(name));
                let _ = Decryptor::new(keys).decrypt(&text, format);
            }
        }
    }
}

#[test]
fn a_decrypted_document_writes_back_as_yaml_in_order() {
    let document = decrypt("secrets.enc.yaml", key(1)).unwrap();
    let yaml = document.to_yaml();
    let back: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert!(same(&back, &plain_yaml()), "{}", yaml.as_str());
    assert!(yaml.starts_with("\"db\":\n    \"user\": \"deploy\""), "{}", yaml.as_str());
}
