//! Native SOPS for Gantry: decrypt (and encrypt) SOPS files in memory, in Rust, with age keys. Values are AES-256-GCM with their key
//! path as additional data, the data key is opened from the file's age recipients (combining key groups with
//! Shamir's scheme), and the MAC over all values is verified before any value is returned.
//!
//! Formats: YAML, JSON, dotenv, INI, binary. Key sources: age X25519 (PGP, cloud KMS and Vault are refused as
//! unsupported, with the source named). Decrypted values come out as [`gantry_core::Secret`]s, masked in `Debug`,
//! zeroed on drop, ready to register with a run.
//!
//! ```
//! use gantry_sops::{Decryptor, Format, Identities};
//!
//! # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
//! // In production: Identities::from_environment() reads SOPS_AGE_KEY, SOPS_AGE_KEY_FILE or the default keys file.
//! let keys = Identities::parse(&std::fs::read_to_string(format!("{dir}key1.txt")).unwrap()).unwrap();
//! let file = std::fs::read_to_string(format!("{dir}secrets.enc.json")).unwrap();
//! let values = Decryptor::new(keys).decrypt(&file, Format::Json).unwrap();
//! let password = values.get(&["db", "password"]).unwrap();
//! assert_eq!(format!("{password:?}"), format!("Secret({})", gantry_core::MASK));
//! assert_eq!(password.expose(), "s3cr3t-p@ss");
//! ```

mod cipher;
mod decrypt;
mod encrypt;
mod error;
mod format;
mod keys;
mod metadata;
mod shamir;
mod tree;

pub use decrypt::{Decryptor, Document};
pub use encrypt::Encryptor;
pub use error::SopsError;
pub use format::Format;
pub use keys::Identities;
pub use tree::Value;
