//! Secret values and their redaction.
//!
//! A [`Secret`] prints as a mask in `Debug` and `Display` and zeroes its memory on drop. Every secret known to a run
//! (given in its [`Context`](crate::Context), or registered by a step at run time) is masked by the run's
//! [`Redactor`] in every event, log line, error and report before anything leaves the executor.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};

use zeroize::Zeroizing;

/// What a secret value is replaced with wherever it would be shown.
pub const MASK: &str = "********";

/// A secret string: masked when printed, zeroed when dropped.
///
/// ```
/// use gantry_core::Secret;
/// let token = Secret::new("hunter2");
/// assert_eq!(format!("{token:?} {token}"), "Secret(********) ********");
/// assert_eq!(token.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret value itself. Pass it only where it is needed (an argument, an environment variable, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Masks every registered secret value in text. Cheap to clone: clones share the set of secrets.
///
/// For each registered value it masks:
/// - the value itself, and the value without the whitespace around it (a secret read from a file usually ends in a
///   newline, and is used without it);
/// - each line of a multi-line value (PEM keys, kubeconfigs), once trimmed, if it has at least 8 characters: output
///   streamed line by line never holds the whole value on one line;
/// - the forms a careless step is likely to print it in: escaped inside a JSON or Rust string (`\n`, `\"`),
///   percent-encoded (RFC 3986, with and without `/` kept, and with `+` for spaces), and base64 (standard and
///   URL-safe alphabets, padded or not, and the part of the encoding it shows when it is embedded in a longer
///   encoded text at any byte alignment, as in HTTP Basic credentials).
///
/// Every occurrence of every one of these texts is found, overlapping ones included, and the union of what they cover
/// is masked: two secrets that overlap in a text leave nothing of either. An empty or all-whitespace value is never
/// registered; a very
/// short one (a single character) is masked wherever it occurs, as CI systems do.
///
/// What it cannot catch is listed in `docs/guides/secrets.md`: other encodings (hex, base32, compression, hashes),
/// a value printed in pieces (split across log lines or events, a prefix, one character at a time), changed (case,
/// reversed, spaced out), or written by a step straight to a place Gantry does not see (its own files, stdout, a
/// network peer).
#[derive(Clone, Default)]
pub struct Redactor {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    known: RwLock<Known>,
    /// Whether any value is registered: read without the lock on every poll of a run (`panic.rs`).
    any: std::sync::atomic::AtomicBool,
}

/// The registered values and the texts each makes masked.
#[derive(Default)]
struct Known {
    secrets: Vec<Secret>,
    /// Every text to mask, each once, longest first.
    needles: Vec<Zeroizing<String>>,
}

/// Lines of a multi-line secret, and encoded fragments, shorter than this are not masked on their own.
const MIN_PART: usize = 8;

impl Redactor {
    /// A redactor that knows no secret yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a value to be masked from now on. Registering the same value twice is harmless.
    pub fn register(&self, secret: &Secret) {
        if secret.expose().trim().is_empty() {
            return;
        }
        let mut known = self.inner.known.write().unwrap_or_else(|e| e.into_inner());
        if known.secrets.iter().any(|s| s == secret) {
            return;
        }
        known.secrets.push(secret.clone());
        for needle in needles_of(secret.expose()) {
            if !known.needles.iter().any(|n| **n == *needle) {
                known.needles.push(needle);
            }
        }
        known.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        self.inner.any.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether `other` is a clone of this redactor (shares its secrets).
    pub(crate) fn same_as(&self, other: &Redactor) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// How many distinct values are registered.
    pub fn len(&self) -> usize {
        self.inner.known.read().unwrap_or_else(|e| e.into_inner()).secrets.len()
    }

    /// Whether no value is registered (one atomic load).
    pub fn is_empty(&self) -> bool {
        !self.inner.any.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `text` with everything a registered value makes masked (see the type's documentation) replaced by [`MASK`]:
    /// each stretch of text covered by one or more overlapping matches becomes one mask. Borrows when there is nothing
    /// to mask.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if text.is_empty() || self.is_empty() {
            return Cow::Borrowed(text);
        }
        let known = self.inner.known.read().unwrap_or_else(|e| e.into_inner());
        if known.needles.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut covered: Vec<(usize, usize)> = Vec::new();
        for needle in &known.needles {
            let needle = needle.as_bytes();
            if needle.len() > text.len() {
                continue;
            }
            let finder = memchr::memmem::Finder::new(needle);
            let mut from = 0;
            // Every occurrence, overlapping ones too: "abab" in "ababab" covers all six characters.
            while let Some(at) = finder.find(&text.as_bytes()[from..]) {
                let start = from + at;
                covered.push((start, start + needle.len()));
                from = start + 1;
            }
        }
        if covered.is_empty() {
            return Cow::Borrowed(text);
        }
        covered.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut shown = 0;
        let mut stretch: Option<(usize, usize)> = None;
        for (start, end) in covered {
            match &mut stretch {
                Some((_, stretch_end)) if start <= *stretch_end => *stretch_end = (*stretch_end).max(end),
                _ => {
                    if let Some((s, e)) = stretch.replace((start, end)) {
                        out.push_str(&text[shown..s]);
                        out.push_str(MASK);
                        shown = e;
                    }
                }
            }
        }
        if let Some((s, e)) = stretch {
            out.push_str(&text[shown..s]);
            out.push_str(MASK);
            shown = e;
        }
        out.push_str(&text[shown..]);
        Cow::Owned(out)
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor").field("secrets", &self.len()).finish()
    }
}

/// The texts that registering `value` masks (see [`Redactor`]).
fn needles_of(value: &str) -> Vec<Zeroizing<String>> {
    let mut needles: Vec<Zeroizing<String>> = Vec::new();
    let mut add = |text: String, at_least: usize| {
        let text = Zeroizing::new(text);
        if text.chars().count() >= at_least && !needles.iter().any(|n| **n == *text) {
            needles.push(text);
        }
    };
    add(value.to_owned(), 1);
    let trimmed = value.trim();
    add(trimmed.to_owned(), 1);
    if trimmed.contains('\n') {
        for line in trimmed.lines() {
            add(line.trim().to_owned(), MIN_PART);
        }
    }
    for form in [value, trimmed] {
        add(json_escaped(form), MIN_PART);
        let debug = Zeroizing::new(format!("{form:?}"));
        add(debug[1..debug.len() - 1].to_owned(), MIN_PART);
        add(percent_encoded(form, b""), MIN_PART);
        add(percent_encoded(form, b"/"), MIN_PART);
        add(percent_encoded(form, b" ").replace(' ', "+"), MIN_PART);
        for alphabet in [BASE64, BASE64_URL] {
            add(base64(form.as_bytes(), alphabet, true), MIN_PART);
            for shift in 0..3 {
                add(base64_fragment(form.as_bytes(), shift, alphabet), MIN_PART);
            }
        }
    }
    needles
}

/// `text` as it appears inside a JSON string.
fn json_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() && (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `text` percent-encoded: every byte but RFC 3986's unreserved characters and those in `keep`, as `%XX`.
fn percent_encoded(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') || keep.contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// The characters of a base64 text that `bytes` alone decide when they start `shift` bytes into a 3-byte group of
/// a longer encoded input (the characters shared with unknown neighbours are left out).
fn base64_fragment(bytes: &[u8], shift: usize, alphabet: &[u8; 64]) -> String {
    let mut input = Zeroizing::new(vec![0u8; shift]);
    input.extend_from_slice(bytes);
    let encoded = Zeroizing::new(base64(&input, alphabet, false));
    let n = input.len();
    let known_end = 4 * (n / 3) + n % 3;
    let known_start = [0, 2, 3][shift];
    if known_end <= known_start {
        return String::new();
    }
    encoded[known_start..known_end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(values: &[&str]) -> Redactor {
        let r = Redactor::new();
        for v in values {
            r.register(&Secret::new(*v));
        }
        r
    }

    #[test]
    fn masks_and_borrows_when_clean() {
        let r = redactor(&["abc", "abcdef", "", "  \n"]);
        assert_eq!(r.len(), 2);
        assert_eq!(r.redact("x abcdef y abc"), format!("x {MASK} y {MASK}"));
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn overlapping_secrets_are_masked_as_their_union() {
        let r = redactor(&["abc-123-OVERLAP", "OVERLAP-789-tail"]);
        assert_eq!(r.redact("id=abc-123-OVERLAP-789-tail;"), format!("id={MASK};"));
        // A value overlapping itself.
        let r = redactor(&["abab"]);
        assert_eq!(r.redact("xababab-abab"), format!("x{MASK}-{MASK}"));
    }

    #[test]
    fn a_value_read_with_its_trailing_newline_is_masked_without_it() {
        let r = redactor(&["s3cr3t-from-file\n"]);
        assert_eq!(r.redact("token is s3cr3t-from-file."), format!("token is {MASK}."));
    }

    #[test]
    fn each_line_of_a_multi_line_value_is_masked() {
        let pem = "-----BEGIN PRIVATE KEY-----\r\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\r\n  bXlrZXlsaW5lMg==\r\nAB\r\n-----END PRIVATE KEY-----\r\n";
        let r = redactor(&[pem]);
        assert_eq!(r.redact("line: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"), format!("line: {MASK}"));
        assert_eq!(r.redact("bXlrZXlsaW5lMg=="), MASK);
        assert_eq!(r.redact("AB stays: too short to mean anything"), "AB stays: too short to mean anything");
    }

    #[test]
    fn escaped_url_encoded_and_base64_forms_are_masked() {
        let secret = "p@ss/w0rd+\"q\"\nline2 x";
        let r = redactor(&[secret]);
        let json = serde_json::to_string(secret).unwrap();
        assert_eq!(r.redact(&json), format!("\"{MASK}\""));
        assert_eq!(r.redact(&format!("{secret:?}")), format!("\"{MASK}\""));
        for encoded in [
            "p%40ss%2Fw0rd%2B%22q%22%0Aline2%20x",
            "p%40ss/w0rd%2B%22q%22%0Aline2%20x",
            "p%40ss%2Fw0rd%2B%22q%22%0Aline2+x",
        ] {
            assert_eq!(r.redact(&format!("?a={encoded}&b=1")), format!("?a={MASK}&b=1"), "{encoded}");
        }
        // base64 of the value alone, and of the value inside longer text at each alignment (HTTP Basic credentials).
        let token = "tok-4f9a8e7d-SECRET";
        let r = redactor(&[token]);
        for prefix in ["", "u:", "us:", "use:"] {
            for alphabet in [BASE64, BASE64_URL] {
                let encoded = base64(format!("{prefix}{token}!").as_bytes(), alphabet, true);
                let shown = r.redact(&encoded);
                assert!(shown.contains(MASK), "{prefix:?}: {encoded} -> {shown}");
                let left: String = shown.replace(MASK, "");
                assert!(left.len() <= 8, "at most the characters shared with the neighbours show: {shown}");
            }
        }
    }

    #[test]
    fn base64_matches_the_standard_encoding() {
        assert_eq!(base64(b"hello world", BASE64, true), "aGVsbG8gd29ybGQ=");
        assert_eq!(base64(b"\xfb\xff", BASE64, true), "+/8=");
        assert_eq!(base64(b"\xfb\xff", BASE64_URL, false), "-_8");
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("s3cr3t-value");
        let shown = format!("{s:?} {s} {:?}", vec![s.clone()]);
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
