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
mod emit;
mod encrypt;
mod error;
mod fast_yaml;
mod format;
mod keys;
mod metadata;
mod shamir;
mod step;
mod tree;

pub use decrypt::{Decryptor, Document};
pub use encrypt::Encryptor;
pub use error::SopsError;
pub use format::Format;
pub use keys::Identities;
pub use step::SopsSecrets;
pub use tree::Value;

/// What `benches/sops.rs` compares against: the cost of the cipher alone. Not part of the API.
#[doc(hidden)]
pub mod bench {
    use crate::cipher;

    /// The sealed values of a YAML file with their paths and the data key, ready to be opened.
    pub struct Floor {
        values: Vec<(cipher::Sealed, Vec<u8>)>,
        key: [u8; 32],
    }

    impl Floor {
        /// Reads a single-level YAML map of encrypted values, opening its data key with `keys`.
        pub fn new(text: &str, keys: &crate::Identities) -> Self {
            let enc_start = text.find("-----BEGIN AGE").expect("an age stanza");
            let enc_end = text.find("-----END AGE ENCRYPTED FILE-----").expect("its end") + 32;
            let armored: String = text[enc_start..enc_end].lines().map(str::trim).collect::<Vec<_>>().join("\n") + "\n";
            let key: [u8; 32] =
                keys.decrypt(armored.as_bytes()).expect("the key opens").as_slice().try_into().expect("32 bytes");
            let values = text
                .lines()
                .take_while(|l| !l.starts_with("sops:"))
                .filter_map(|l| {
                    let (k, v) = l.split_once(": ")?;
                    Some((
                        cipher::parse(v.trim().trim_matches('"')).ok()?,
                        format!("{}:", k.trim_matches('"')).into_bytes(),
                    ))
                })
                .collect();
            Self { values, key }
        }

        /// Opens every value; returns how many opened.
        pub fn open_all(&self) -> usize {
            self.values.iter().filter(|(sealed, aad)| cipher::open(sealed, &self.key, aad).is_some()).count()
        }
    }
}
