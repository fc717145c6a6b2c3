//! AWS KMS key sources (feature `kms`): a file the real sops encrypted to a KMS key in moto (both started here;
//! `.ci/test-all` installs them) decrypts with Gantry through the same KMS.

#![cfg(feature = "kms")]

use gantry_sops::{Decryptor, Format, Identities, SopsError};
use gantry_testkit::moto::MotoServer;

#[tokio::test]
#[ignore = "needs moto and sops: run bash .ci/test-all"]
async fn a_file_sops_encrypted_with_kms_decrypts_with_gantry() {
    let moto = MotoServer::start().await.unwrap();
    let aws = gantry_aws::Aws::with_static_credentials("test", "test", "us-east-1", Some(moto.url()));
    let kms = aws_sdk_kms::Client::new(aws.sdk_config());
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap().arn.unwrap();
    let dir = std::env::temp_dir().join(format!("gantry-sops-kms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("plain.yaml");
    std::fs::write(&plain, "db:\n  password: s3cr3t-kms\n  port: 5432\n").unwrap();
    let out = std::process::Command::new("sops")
        .args(["--disable-version-check", "encrypt", "--kms", &key, plain.to_str().unwrap()])
        .env("AWS_ENDPOINT_URL", moto.url())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("sops is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let encrypted = String::from_utf8(out.stdout).unwrap();
    assert!(encrypted.contains("kms:") && !encrypted.contains("s3cr3t-kms"));

    let document =
        Decryptor::new(Identities::new()).kms(aws.sdk_config()).decrypt_async(&encrypted, Format::Yaml).await.unwrap();
    assert_eq!(document.get(&["db", "password"]).unwrap().expose(), "s3cr3t-kms");
    assert_eq!(document.get(&["db", "port"]).unwrap().expose(), "5432");

    // Without KMS configured, a KMS-only file is "unsupported", naming the source.
    match Decryptor::new(Identities::new()).decrypt(&encrypted, Format::Yaml) {
        Err(e @ SopsError::Unsupported(_)) => assert!(e.to_string().contains("kms"), "{e}"),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
