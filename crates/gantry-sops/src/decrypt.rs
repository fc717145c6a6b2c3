//! Decryption: the data key from the key groups, every value opened with its path, the MAC checked before anything
//! is returned.

use sha2::{Digest, Sha256, Sha512};
use zeroize::{Zeroize, Zeroizing};

use crate::cipher::{self, Kind};
use crate::error::SopsError;
use crate::format::{self, Format};
use crate::keys::Identities;
use crate::metadata::Metadata;
use crate::tree::Value;

/// Decrypts SOPS documents with age identities.
///
/// ```
/// use gantry_sops::{Decryptor, Format, Identities};
/// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
/// let keys = Identities::parse(&std::fs::read_to_string(format!("{dir}key1.txt")).unwrap()).unwrap();
/// let file = std::fs::read_to_string(format!("{dir}secrets.enc.yaml")).unwrap();
/// let document = Decryptor::new(keys).decrypt(&file, Format::Yaml).unwrap();
/// assert_eq!(document.get(&["db", "user"]).unwrap().expose(), "deploy");
/// ```
#[derive(Debug, Clone)]
pub struct Decryptor {
    identities: Identities,
    allow_missing_mac: bool,
    #[cfg(feature = "kms")]
    kms: Option<aws_sdk_kms::Client>,
}

/// A decrypted document. Values are reached by path and come out as [`gantry_core::Secret`]s; `Debug` masks them,
/// and the plaintext is zeroed on drop.
pub struct Document {
    documents: Vec<Value>,
    comments: Vec<String>,
    format: Format,
    rule: crate::metadata::Rule,
    /// Under comment rules: for each leaf of the first document, in document order, whether it was encrypted.
    sealed: Vec<bool>,
}

impl Decryptor {
    /// Decrypts with these identities; files without a MAC are refused.
    pub fn new(identities: Identities) -> Self {
        Self {
            identities,
            allow_missing_mac: false,
            #[cfg(feature = "kms")]
            kms: None,
        }
    }

    /// Also opens data keys encrypted with AWS KMS, with the credentials, region and endpoint of `config`, in
    /// [`decrypt_async`](Decryptor::decrypt_async) (feature `kms`). The entry's encryption context is sent; its
    /// `role` and `aws_profile` are not: the credentials of `config` are used as they are.
    #[cfg(feature = "kms")]
    #[must_use]
    pub fn kms(mut self, config: &aws_config::SdkConfig) -> Self {
        self.kms = Some(aws_sdk_kms::Client::new(config));
        self
    }

    /// Decrypts as [`decrypt`](Decryptor::decrypt) does, also opening data keys with AWS KMS where no age identity
    /// matches (feature `kms`, configured with [`kms`](Decryptor::kms)).
    #[cfg(feature = "kms")]
    pub async fn decrypt_async(&self, text: &str, format: Format) -> Result<Document, SopsError> {
        let parsed = format::parse(text, format)?;
        let metadata = Metadata::read(&parsed.metadata)?;
        let mut opened = Vec::new();
        for group in &metadata.groups {
            let age = group.age.iter().find_map(|(_, enc)| self.identities.decrypt(enc.as_bytes()));
            let share = match (age, &self.kms) {
                (Some(share), _) => Some(share),
                (None, Some(client)) => kms_open(client, &group.kms).await,
                (None, None) => None,
            };
            opened.push(share);
        }
        let key = self.combine(&metadata, opened)?;
        self.finish(parsed, metadata, &key, format)
    }

    /// Decrypts files that carry no MAC (as `sops decrypt --ignore-mac` would); a MAC that is there is still checked.
    #[must_use]
    pub fn allow_missing_mac(mut self) -> Self {
        self.allow_missing_mac = true;
        self
    }

    /// Reads and decrypts the file at `path`, in the format its name says (or `format`). The file's text is zeroed
    /// after use; errors name the file.
    pub fn decrypt_file(&self, path: &std::path::Path, format: Option<Format>) -> Result<Document, SopsError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| SopsError::Read { path: path.display().to_string(), why: e.to_string() })?,
        );
        let format = format.unwrap_or_else(|| Format::from_path(path));
        self.decrypt(&text, format)
            .map_err(|e| SopsError::File { path: path.display().to_string(), source: Box::new(e) })
    }

    /// As [`decrypt_file`](Self::decrypt_file), on tokio's blocking pool: reading a file (a slow disk, a network
    /// mount) and decrypting a large one must not hold up the thread a run's steps share. For pipeline steps.
    pub async fn decrypt_file_off_thread(
        &self,
        path: std::path::PathBuf,
        format: Option<Format>,
    ) -> Result<Document, SopsError> {
        let decryptor = self.clone();
        let shown = path.display().to_string();
        tokio::task::spawn_blocking(move || decryptor.decrypt_file(&path, format))
            .await
            .unwrap_or_else(|e| Err(SopsError::Read { path: shown, why: format!("the reading task ended: {e}") }))
    }

    /// Decrypts `text` in `format`. Every value is opened and the MAC checked before anything is returned; on any
    /// error, the plaintext decrypted so far is zeroed.
    pub fn decrypt(&self, text: &str, format: Format) -> Result<Document, SopsError> {
        let parsed = format::parse(text, format)?;
        if parsed.fast {
            // The fast YAML path read it; should the values not verify, read it again with the full parser.
            return match self.decrypt_parsed(parsed, format) {
                Err(SopsError::MacMismatch | SopsError::Tampered { .. } | SopsError::Malformed { .. }) => {
                    self.decrypt_parsed(format::parse_full_yaml(text)?, format)
                }
                other => other,
            };
        }
        self.decrypt_parsed(parsed, format)
    }

    fn decrypt_parsed(&self, parsed: format::Parsed, format: Format) -> Result<Document, SopsError> {
        let metadata = Metadata::read(&parsed.metadata)?;
        let opened = metadata
            .groups
            .iter()
            .map(|group| group.age.iter().find_map(|(_, enc)| self.identities.decrypt(enc.as_bytes())))
            .collect();
        let key = self.combine(&metadata, opened)?;
        self.finish(parsed, metadata, &key, format)
    }

    /// Opens every value with the data key and checks the MAC.
    fn finish(
        &self,
        parsed: format::Parsed,
        metadata: Metadata,
        key: &[u8; 32],
        format: Format,
    ) -> Result<Document, SopsError> {
        let mut document = Document {
            documents: parsed.documents,
            comments: Vec::new(),
            format,
            rule: metadata.rule.clone(),
            sealed: Vec::new(),
        };
        let mut mac = Sha512::new();
        if metadata.mac_only_encrypted {
            mac.update(Sha256::digest(b"sops"));
        }
        let opener = cipher::Opener::new(key);
        for (i, d) in document.documents.iter_mut().enumerate() {
            let sealed = (i == 0 && metadata.rule.by_comments()).then_some(&mut document.sealed);
            open_tree(d, &opener, &metadata, &mut mac, sealed)?;
        }
        self.check_mac(&metadata, key, &mac.finalize())?;
        for (path, sealed) in parsed.comments {
            // As sops: a comment that does not open stays as it is.
            let aad = format!("{}:", path.join(":"));
            let opened = cipher::parse(&sealed).ok().and_then(|s| cipher::open(&s, key, aad.as_bytes()));
            document.comments.push(match opened {
                Some(plain) => String::from_utf8_lossy(&plain).into_owned(),
                None => sealed,
            });
        }
        Ok(document)
    }

    /// The data key from what each key group opened (its data key, or its Shamir share), or why there is none.
    fn combine(
        &self,
        metadata: &Metadata,
        opened: Vec<Option<Zeroizing<Vec<u8>>>>,
    ) -> Result<Zeroizing<[u8; 32]>, SopsError> {
        let recipients: Vec<String> =
            metadata.groups.iter().flat_map(|g| g.age.iter().map(|(r, _)| r.clone())).collect();
        let unsupported: Vec<String> =
            metadata.groups.iter().filter(|g| g.age.is_empty()).flat_map(|g| g.others.iter().cloned()).collect();
        let mut shares: Vec<Zeroizing<Vec<u8>>> = opened.into_iter().flatten().collect();
        let key: Zeroizing<Vec<u8>> = if metadata.groups.len() <= 1 {
            match shares.pop() {
                Some(key) => key,
                None if recipients.is_empty() && !unsupported.is_empty() => {
                    return Err(SopsError::Unsupported(unsupported.join(", ")));
                }
                None => return Err(SopsError::NoMatchingIdentity { tried: self.identities.recipients(), recipients }),
            }
        } else {
            if shares.len() < metadata.threshold {
                if shares.is_empty() && recipients.is_empty() && !unsupported.is_empty() {
                    return Err(SopsError::Unsupported(unsupported.join(", ")));
                }
                return Err(SopsError::NotEnoughKeyGroups {
                    threshold: metadata.threshold,
                    groups: metadata.groups.len(),
                    opened: shares.len(),
                });
            }
            let parts: Vec<&[u8]> = shares.iter().map(|s| s.as_slice()).collect();
            Zeroizing::new(
                crate::shamir::combine(&parts)
                    .ok_or_else(|| SopsError::Metadata("the key groups' shares do not combine".into()))?,
            )
        };
        let key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| SopsError::Metadata(format!("a data key of {} bytes, not 32", key.len())))?;
        Ok(Zeroizing::new(key))
    }

    fn check_mac(&self, metadata: &Metadata, key: &[u8; 32], computed: &[u8]) -> Result<(), SopsError> {
        if metadata.mac.is_empty() {
            return if self.allow_missing_mac { Ok(()) } else { Err(SopsError::NoMac) };
        }
        let sealed =
            cipher::parse(&metadata.mac).map_err(|why| SopsError::Malformed { path: "sops.mac".into(), why })?;
        let stored = cipher::open(&sealed, key, metadata.mac_aad().as_bytes()).ok_or(SopsError::MacMismatch)?;
        let computed: String = computed.iter().map(|b| format!("{b:02X}")).collect();
        // Not secret: a MAC over the plaintext, but compared in full anyway.
        if stored.as_slice() != computed.as_bytes() {
            return Err(SopsError::MacMismatch);
        }
        Ok(())
    }
}

/// Opens every encrypted value of a tree in place, feeding the MAC in document order.
fn open_tree(
    value: &mut Value,
    key: &cipher::Opener,
    metadata: &Metadata,
    mac: &mut Sha512,
    mut sealed_leaves: Option<&mut Vec<bool>>,
) -> Result<(), SopsError> {
    // The additional data of each value, `a:b:c:`, built in one buffer reused for every value.
    let mut aad = String::new();
    crate::tree::for_each_leaf(value, &mut Vec::new(), &mut |leaf, path| {
        let sealed = matches!(&*leaf, Value::Str(text) if cipher::is_sealed(text));
        if let Some(leaves) = sealed_leaves.as_deref_mut() {
            leaves.push(sealed);
        }
        // Under comment rules the path cannot say what sops encrypted; the file shows it (an empty string, which
        // sops leaves as it is, adds nothing to the MAC either way).
        let encrypted = if metadata.rule.by_comments() { sealed } else { metadata.rule.encrypts(path) };
        let hashed = !metadata.mac_only_encrypted || encrypted;
        let where_ = || path.join(".");
        if sealed && let Value::Str(text) = leaf {
            let sealed = cipher::parse(text).map_err(|why| SopsError::Malformed { path: where_(), why })?;
            aad.clear();
            for component in path {
                aad.push_str(component);
                aad.push(':');
            }
            let kind = sealed.kind;
            let plain = key.open_owned(sealed, aad.as_bytes()).ok_or_else(|| SopsError::Tampered { path: where_() })?;
            if hashed {
                mac.update(plain.as_slice());
            }
            let typed = typed_owned(plain, kind)
                .ok_or_else(|| SopsError::Malformed { path: where_(), why: format!("not a valid {}", kind.name()) })?;
            *leaf = typed; // The `ENC[...]` text it replaces is ciphertext: nothing to zero.
        } else if hashed {
            mac.update(to_bytes(leaf).as_slice());
        }
        Ok(())
    })
}

/// The data key (or share) from the first KMS entry that opens.
#[cfg(feature = "kms")]
async fn kms_open(client: &aws_sdk_kms::Client, keys: &[crate::metadata::KmsKey]) -> Option<Zeroizing<Vec<u8>>> {
    use base64::Engine;
    for key in keys {
        let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(key.enc.trim()) else { continue };
        let mut request = client.decrypt().key_id(&key.arn).ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob));
        for (k, v) in &key.context {
            request = request.encryption_context(k, v);
        }
        // A key that cannot open the data key is not fatal: another key, or another group, may.
        if let Ok(answer) = request.send().await
            && let Some(plain) = answer.plaintext()
        {
            return Some(Zeroizing::new(plain.as_ref().to_vec()));
        }
    }
    None
}

/// A decrypted value back in its type, a string taking the decrypted buffer itself (no copy to zero later).
fn typed_owned(mut plain: Zeroizing<Vec<u8>>, kind: Kind) -> Option<Value> {
    if matches!(kind, Kind::Str | Kind::Comment) {
        return match String::from_utf8(std::mem::take(&mut *plain)) {
            Ok(text) => Some(Value::Str(text)),
            Err(e) => {
                e.into_bytes().zeroize();
                None
            }
        };
    }
    typed(&plain, kind)
}

/// A decrypted value back in its type.
fn typed(plain: &[u8], kind: Kind) -> Option<Value> {
    let text = || std::str::from_utf8(plain).ok();
    Some(match kind {
        Kind::Str | Kind::Comment => Value::Str(text()?.to_owned()),
        Kind::Int => Value::Int(text()?.parse().ok()?),
        Kind::Float => Value::Float(text()?.parse().ok()?),
        Kind::Bool => Value::Bool(match text()? {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            _ => return None,
        }),
        Kind::Bytes => Value::Bytes(plain.to_vec()),
    })
}

/// A plain value as sops hashes it: strings as they are, integers in decimal, floats in the shortest form, booleans
/// as `True`/`False`.
fn to_bytes(value: &Value) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(match value {
        Value::Str(s) => s.as_bytes().to_vec(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Float(f) => format_float(*f).into_bytes(),
        Value::Bool(true) => b"True".to_vec(),
        Value::Bool(false) => b"False".to_vec(),
        Value::Bytes(b) => b.clone(),
        Value::Null | Value::Map(_) | Value::Seq(_) => Vec::new(),
    })
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest decimal that round-trips, without an exponent.
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    // Rust's `Display` for f64 is the shortest round-trip decimal and never uses an exponent.
    format!("{f}")
}

impl Document {
    /// The value at a path of map keys (`["db", "password"]`), in the first document, as a secret. Numbers and
    /// booleans come as their text.
    pub fn get(&self, path: &[&str]) -> Option<gantry_core::Secret> {
        self.documents.first()?.get(path).and_then(secret_of)
    }

    /// The decrypted documents (YAML may hold several). Handle with care: these are the plaintext values.
    pub fn documents(&self) -> &[Value] {
        &self.documents
    }

    /// The decrypted comments, in document order.
    pub fn comments(&self) -> &[String] {
        &self.comments
    }

    /// The first document as YAML (maps in document order, strings double-quoted), e.g. to hand decrypted values to
    /// Helm on its standard input. Zeroed on drop.
    pub fn to_yaml(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::new());
        if let Some(d) = self.documents.first() {
            crate::emit::yaml_value(&mut out, d, 0);
        }
        out
    }

    /// The format the document came in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The values the file keeps encrypted, as secrets by dotted path (`db.password`; list items as `list.0`), to
    /// register with a run so that none of them can show in its events and logs.
    pub fn secrets(&self) -> Vec<(String, gantry_core::Secret)> {
        self.leaves().into_iter().filter(|(_, encrypted, _)| *encrypted).map(|(p, _, s)| (p, s)).collect()
    }

    /// The values the file's rules keep in plaintext (`unencrypted_suffix`, outside `encrypted_regex`, ...), by
    /// dotted path.
    pub fn plain_values(&self) -> Vec<(String, String)> {
        self.leaves()
            .into_iter()
            .filter(|(_, encrypted, _)| !*encrypted)
            .map(|(p, _, s)| (p, s.expose().to_owned()))
            .collect()
    }

    /// Every leaf of the first document: dotted path, whether the file encrypts it, and its value.
    fn leaves(&self) -> Vec<(String, bool, gantry_core::Secret)> {
        fn walk(
            v: &Value,
            rule: &crate::metadata::Rule,
            sealed: &mut std::slice::Iter<'_, bool>,
            keys: &mut Vec<String>,
            path: &mut Vec<String>,
            out: &mut Vec<(String, bool, gantry_core::Secret)>,
        ) {
            match v {
                Value::Map(entries) => {
                    for (k, v) in entries {
                        keys.push(k.clone());
                        path.push(k.clone());
                        walk(v, rule, sealed, keys, path, out);
                        path.pop();
                        keys.pop();
                    }
                }
                Value::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        path.push(i.to_string());
                        walk(item, rule, sealed, keys, path, out);
                        path.pop();
                    }
                }
                Value::Null => {}
                leaf => {
                    // One flag per leaf `open_tree` visited (every leaf but null), under comment rules.
                    let was_sealed = sealed.next().copied();
                    if let Some(s) = secret_of(leaf) {
                        // The rule sees map keys only, as sops does (list items add no path component).
                        let encrypted =
                            if rule.by_comments() { was_sealed.unwrap_or(true) } else { rule.encrypts(keys) };
                        out.push((path.join("."), encrypted, s));
                    }
                }
            }
        }
        let mut out = Vec::new();
        if let Some(d) = self.documents.first() {
            walk(d, &self.rule, &mut self.sealed.iter(), &mut Vec::new(), &mut Vec::new(), &mut out);
        }
        out
    }
}

fn secret_of(value: &Value) -> Option<gantry_core::Secret> {
    Some(gantry_core::Secret::new(match value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_float(*f),
        Value::Bool(b) => b.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Null | Value::Map(_) | Value::Seq(_) => return None,
    }))
}

fn zeroize_tree(value: &mut Value) {
    match value {
        Value::Str(s) => s.zeroize(),
        Value::Bytes(b) => b.zeroize(),
        Value::Map(entries) => {
            for (k, v) in entries {
                k.zeroize();
                zeroize_tree(v);
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(zeroize_tree),
        Value::Int(i) => *i = 0,
        Value::Float(f) => *f = 0.0,
        Value::Bool(b) => *b = false,
        Value::Null => {}
    }
}

impl Drop for Document {
    fn drop(&mut self) {
        self.documents.iter_mut().for_each(zeroize_tree);
        self.comments.iter_mut().for_each(Zeroize::zeroize);
    }
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("format", &self.format)
            .field("documents", &self.documents)
            .field("comments", &self.comments.len())
            .finish()
    }
}
