//! Native SOPS decryption against the real `sops decrypt`, on one 10,000-value file.
//!
//! The file: a YAML map of 10,000 keys with short string values (`value-00042`), encrypted to one age recipient by
//! Gantry's `Encryptor` (the same format sops writes; sops decrypts it). Measured in one run, interleaved:
//! - the crypto floor: opening the 10,000 sealed values with AES-256-GCM alone (no parsing, no MAC);
//! - `gantry-sops`: parse, open the data key, open every value, verify the MAC;
//! - `sops decrypt` on the same file (a process: start-up, Go, age, output), if `sops` is installed;
//! - `gantry-sops` on the same values as JSON (a faster parser than YAML's).
//!
//! `GANTRY_SOPS_PARSE=1` also times the YAML parse alone (serde-saphyr, with and without its budget).
//!
//! Run: `cargo bench --bench sops`. Figures are recorded in docs/PERFORMANCE.md.
#![allow(clippy::print_stdout)] // The bench prints the table docs/PERFORMANCE.md records.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use gantry_sops::{Decryptor, Encryptor, Format, Identities};

const VALUES: usize = 10_000;
const KEY: &str = "AGE-SECRET-KEY-1LD63ZKKFTLE8KS3TMALA54Q8J5VJHXZ52N9A9QZ9RSA52XCJQLLQALXRTV";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let keys = Identities::parse(KEY).unwrap();
    let mut plain = String::new();
    for i in 0..VALUES {
        let _ = writeln!(plain, "key{i:05}: value-{i:05}");
    }
    let encrypted = Encryptor::new(keys.recipients()).unwrap().encrypt(&plain, Format::Yaml).unwrap();
    let path = std::env::temp_dir().join(format!("gantry-sops-bench-{}.yaml", std::process::id()));
    std::fs::write(&path, &encrypted).unwrap();
    let decryptor = Decryptor::new(keys.clone());
    // The same values as JSON: a faster parser, for comparison.
    let mut json_plain = String::from("{");
    for i in 0..VALUES {
        let _ = write!(json_plain, "{}\"key{i:05}\": \"value-{i:05}\"", if i > 0 { "," } else { "" });
    }
    json_plain.push('}');
    let json = Encryptor::new(keys.recipients()).unwrap().encrypt(&json_plain, Format::Json).unwrap();
    let floor = gantry_sops::bench::Floor::new(&encrypted, &keys);
    let sops = std::process::Command::new("sops")
        .args(["--disable-version-check", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());

    if std::env::var_os("GANTRY_SOPS_PARSE").is_some() {
        let t = Instant::now();
        for _ in 0..10 {
            let docs: Vec<gantry_sops::Value> = serde_saphyr::from_multiple(&encrypted).unwrap();
            assert_eq!(docs.len(), 1);
        }
        println!("parse alone: {:.2?} per file", t.elapsed() / 10);
        let mut options = serde_saphyr::Options::default();
        options.budget = None;
        options.with_snippet = false;
        let t = Instant::now();
        for _ in 0..10 {
            let docs: Vec<gantry_sops::Value> =
                serde_saphyr::from_multiple_with_options(&encrypted, options.clone()).unwrap();
            assert_eq!(docs.len(), 1);
        }
        println!("parse without budget and snippets: {:.2?} per file", t.elapsed() / 10);
        let t = Instant::now();
        for _ in 0..10 {
            let v: serde_json::Value = serde_saphyr::from_str(&encrypted).unwrap();
            assert!(v.is_object());
        }
        println!("parse into serde_json::Value: {:.2?} per file", t.elapsed() / 10);
    }
    let (mut floors, mut natives, mut binaries, mut jsons) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..30 {
        let t = Instant::now();
        assert_eq!(floor.open_all(), VALUES);
        floors.push(t.elapsed());
        let t = Instant::now();
        let document = decryptor.decrypt(&encrypted, Format::Yaml).unwrap();
        natives.push(t.elapsed());
        assert_eq!(document.get(&["key00042"]).unwrap().expose(), "value-00042");
        let t = Instant::now();
        let document = decryptor.decrypt(&json, Format::Json).unwrap();
        jsons.push(t.elapsed());
        assert_eq!(document.get(&["key00042"]).unwrap().expose(), "value-00042");
        if sops && round % 3 == 0 {
            let t = Instant::now();
            let out = std::process::Command::new("sops")
                .args(["--disable-version-check", "decrypt", path.to_str().unwrap()])
                .env("SOPS_AGE_KEY", KEY)
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .output()
                .unwrap();
            binaries.push(t.elapsed());
            assert!(out.status.success() && out.stdout.len() > VALUES * 10);
        }
    }
    let _ = std::fs::remove_file(&path);
    let (floor, native) = (median(floors), median(natives));
    let per = |d: Duration| d.as_secs_f64() * 1e6 / VALUES as f64;
    println!("one YAML file of {VALUES} short values, median of 30 runs (sops: 10)\n");
    println!("| | per file | per value | × crypto floor |");
    println!("|---|---:|---:|---:|");
    println!("| AES-256-GCM only (floor) | {floor:.2?} | {:.3} µs | 1.00 |", per(floor));
    println!("| gantry-sops decrypt | {native:.2?} | {:.3} µs | {:.2} |", per(native), per(native) / per(floor));
    let json = median(jsons);
    println!(
        "| gantry-sops decrypt, the same values as JSON | {json:.2?} | {:.3} µs | {:.2} |",
        per(json),
        per(json) / per(floor)
    );
    if !binaries.is_empty() {
        let binary = median(binaries);
        println!(
            "| sops decrypt (process) | {binary:.2?} | {:.3} µs | {:.2} |\n\ngantry-sops is {:.1}× faster than sops decrypt",
            per(binary),
            per(binary) / per(floor),
            binary.as_secs_f64() / native.as_secs_f64()
        );
    } else {
        println!("\n(sops is not installed: bash .ci/test-all installs it)");
    }
}
