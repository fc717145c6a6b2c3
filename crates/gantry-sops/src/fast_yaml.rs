//! A fast path for the YAML that sops writes: block mappings and sequences, one-line scalars, `|` literal blocks,
//! comments. Anything else (flow collections, anchors, tags, folded or multi-line scalars, several documents)
//! returns `None`, and the full parser (serde-saphyr) reads the file instead. The tests check that both agree.

use crate::tree::Value;

/// One meaningful line: its indentation and content (comments and blank lines dropped).
struct Line<'a> {
    indent: usize,
    text: &'a str,
    /// Its line number in the file (literal blocks must be contiguous: blank and `#` lines in them are content).
    number: usize,
}

/// Parses `text` if it stays within the subset; `None` otherwise.
pub(crate) fn parse(text: &str) -> Option<Value> {
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start_matches(' ');
        let marker = |m: &str| line == m || line.starts_with(&format!("{m} "));
        if line.contains('\t') || marker("---") || marker("...") || line.starts_with('%') {
            return None;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        lines.push(Line { indent: line.len() - trimmed.len(), text: trimmed, number });
    }
    let mut at = 0;
    let value = block(text, &lines, &mut at, 0)?;
    (at == lines.len()).then_some(value)
}

/// The block (mapping or sequence) whose lines start at `lines[*at]` with indentation `indent`.
fn block(source: &str, lines: &[Line<'_>], at: &mut usize, indent: usize) -> Option<Value> {
    let first = lines.get(*at)?;
    if first.indent != indent {
        return None;
    }
    if first.text.starts_with("- ") || first.text == "-" {
        sequence(source, lines, at, indent)
    } else {
        mapping(source, lines, at, indent)
    }
}

fn mapping(source: &str, lines: &[Line<'_>], at: &mut usize, indent: usize) -> Option<Value> {
    let mut entries = Vec::new();
    while let Some(line) = lines.get(*at) {
        if line.indent < indent {
            break;
        }
        if line.indent > indent || line.text.starts_with("- ") {
            return None;
        }
        let (key, rest) = split_key(line.text)?;
        *at += 1;
        let value = match rest {
            "" => match lines.get(*at) {
                Some(next) if next.indent > indent => block(source, lines, at, next.indent)?,
                // A sequence may sit at the same indentation as its key.
                Some(next) if next.indent == indent && next.text.starts_with("- ") => {
                    sequence(source, lines, at, indent)?
                }
                _ => Value::Null,
            },
            "|" | "|-" => literal(lines, at, indent, rest == "|")?,
            scalar_text => scalar(scalar_text)?,
        };
        entries.push((key, value));
    }
    Some(Value::Map(entries))
}

fn sequence(source: &str, lines: &[Line<'_>], at: &mut usize, indent: usize) -> Option<Value> {
    let mut items = Vec::new();
    while let Some(line) = lines.get(*at) {
        if line.indent < indent || !(line.text.starts_with("- ") || line.text == "-") {
            break;
        }
        if line.indent > indent {
            return None;
        }
        let rest = line.text.strip_prefix('-').map(str::trim_start).unwrap_or_default();
        if rest.is_empty() {
            *at += 1;
            match lines.get(*at) {
                Some(next) if next.indent > indent => items.push(block(source, lines, at, next.indent)?),
                _ => items.push(Value::Null),
            }
        } else if split_key(rest).is_some() && !rest.starts_with(['"', '\'']) {
            // `- key: value`: a mapping whose first entry shares the dash's line, the rest aligned with it.
            let inner = indent + (line.text.len() - rest.len());
            let mut synthetic: Vec<Line<'_>> = vec![Line { indent: inner, text: rest, number: line.number }];
            let mut end = *at + 1;
            while let Some(next) = lines.get(end) {
                if next.indent < inner {
                    break;
                }
                synthetic.push(Line { indent: next.indent, text: next.text, number: next.number });
                end += 1;
            }
            let mut inner_at = 0;
            let value = mapping(source, &synthetic, &mut inner_at, inner)?;
            if inner_at != synthetic.len() {
                return None;
            }
            items.push(value);
            *at = end;
        } else {
            items.push(scalar(rest)?);
            *at += 1;
        }
    }
    Some(Value::Seq(items))
}

/// A `|` block: the following lines indented more than `indent`, joined by newlines (`keep`: a final newline).
fn literal(lines: &[Line<'_>], at: &mut usize, indent: usize, keep: bool) -> Option<Value> {
    let first = lines.get(*at)?;
    let base = first.indent;
    if base <= indent || *at == 0 || first.number != lines[*at - 1].number + 1 {
        return None;
    }
    let mut out = String::new();
    let mut previous = lines[*at - 1].number;
    while let Some(line) = lines.get(*at) {
        if line.indent < base {
            break;
        }
        if line.number != previous + 1 {
            return None; // A blank or `#` line inside the block: leave it to the full parser.
        }
        previous = line.number;
        out.push_str(&" ".repeat(line.indent - base));
        out.push_str(line.text);
        out.push('\n');
        *at += 1;
    }
    if !keep {
        out.pop();
    }
    Some(Value::Str(out))
}

/// `key: rest` for a plain or quoted key; `None` if the line is not a mapping entry of the subset.
fn split_key(text: &str) -> Option<(String, &str)> {
    let (key, rest) = if let Some(quoted) = text.strip_prefix('"') {
        let end = closing_double_quote(quoted)?;
        let key: String = serde_json::from_str(&text[..end + 2]).ok()?;
        (key, text[end + 2..].strip_prefix(':')?)
    } else if let Some(quoted) = text.strip_prefix('\'') {
        let end = quoted.find('\'')?;
        (quoted[..end].to_owned(), quoted[end + 1..].strip_prefix(':')?)
    } else {
        let colon = text.find(": ").or_else(|| text.strip_suffix(':').map(|t| t.len()))?;
        let key = &text[..colon];
        if key.is_empty()
            || key.contains(['#', '{', '[', '&', '*', '!', '|', '>', '"', '\''])
            || key.starts_with(['-', '?'])
        {
            return None;
        }
        (key.to_owned(), &text[colon + 1..])
    };
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some((key, rest.trim()))
}

fn closing_double_quote(after_open: &str) -> Option<usize> {
    let bytes = after_open.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// A one-line scalar with YAML 1.2 core-schema resolution for plain ones; `None` outside the subset.
fn scalar(text: &str) -> Option<Value> {
    // Most values of a sops file: an `ENC[...]` plain scalar. Without a space it can hold no comment and no
    // mapping indicator, so it is the string itself.
    if crate::cipher::is_sealed(text) && !text.contains(' ') {
        return Some(Value::Str(text.to_owned()));
    }
    if let Some(rest) = text.strip_prefix('"') {
        let end = closing_double_quote(rest)?;
        if !rest[end + 1..].trim().is_empty() {
            return None;
        }
        return serde_json::from_str::<String>(&text[..end + 2]).ok().map(Value::Str);
    }
    if let Some(rest) = text.strip_prefix('\'') {
        let inner = rest.strip_suffix('\'')?;
        if inner.replace("''", "").contains('\'') {
            return None;
        }
        return Some(Value::Str(inner.replace("''", "'")));
    }
    match text {
        "[]" => return Some(Value::Seq(Vec::new())),
        "{}" => return Some(Value::Map(Vec::new())),
        _ => {}
    }
    let special_float = text.starts_with('.') || text.starts_with("+.") || text.starts_with("-.");
    if special_float
        || text.starts_with(['{', '[', '&', '*', '!', '|', '>', '%', '@', '`', '?', '-'])
        || text.contains(" #")
        || text.contains(": ")
    {
        // `-` too: a leading dash that is not a number is a nested sequence or unusual enough to leave alone.
        if integer(text).is_none() && float(text).is_none() {
            return None;
        }
    }
    Some(match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => {
            if let Some(i) = integer(text) {
                Value::Int(i)
            } else if let Some(f) = float(text) {
                Value::Float(f)
            } else if text.starts_with(['.', '+', '-', '0'])
                && text.len() > 1
                && text.bytes().any(|b| b.is_ascii_digit())
            {
                // Octal, hex, leading zeros, special floats: leave them to the full parser.
                return None;
            } else {
                Value::Str(text.to_owned())
            }
        }
    })
}

fn integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

fn float(text: &str) -> Option<f64> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = mantissa.split_once('.')?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || (whole.len() > 1 && whole.starts_with('0')) {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        if e.is_empty() || !digits(e) {
            return None;
        }
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(text: &str) -> (Option<Value>, Value) {
        (parse(text), serde_saphyr::from_str_with_options(text, crate::format::yaml_options()).unwrap())
    }

    #[test]
    fn agrees_with_the_full_parser_on_the_subset() {
        for text in [
            "a: 1\nb:\n    c: true\n    d: 0.75\n    e: \"quoted \\\"x\\\"\"\nlist:\n    - a\n    - 2\n",
            "note_unencrypted: visible\n# a comment\nempty:\nx: ~\n",
            "enc: |\n    -----BEGIN-----\n    line\n    -----END-----\nnext: v\n",
            "items:\n- name: a\n  value: 1\n- name: b\n  value: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\n",
            "\"key with: colon\": 'single ''quoted'''\n",
            "n: -3\nf: -0.5\nyes: no\nhc_vault: []\nempty: {}\n",
        ] {
            let (fast, full) = both(text);
            assert_eq!(fast.as_ref(), Some(&full), "{text}");
        }
    }

    #[test]
    fn reads_every_yaml_fixture_as_the_full_parser_does() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
        for name in [
            "secrets.enc.yaml",
            "multi-recipient.enc.yaml",
            "encrypted-regex.enc.yaml",
            "mac-only-encrypted.enc.yaml",
            "keygroups-shamir.enc.yaml",
            "plain.yaml",
        ] {
            let text = std::fs::read_to_string(format!("{dir}{name}")).unwrap();
            let (fast, full) = both(&text);
            assert_eq!(fast.as_ref(), Some(&full), "{name}: the fast path reads it, and the same");
        }
        // Older upstream files may use what the fast path leaves to the full parser; if it reads them, it agrees.
        for name in [
            "upstream/example.yaml",
            "upstream/functional-tests/res/comments.enc.yaml",
            "upstream/functional-tests/res/format.enc.yaml",
        ] {
            let text = std::fs::read_to_string(format!("{dir}{name}")).unwrap();
            let (fast, full) = both(&text);
            assert!(fast.is_none_or(|fast| fast == full), "{name}");
        }
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        /// Scalars as sops writes them: plain words, numbers, booleans, quoted strings with anything in them.
        fn scalar() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-zA-Z][a-zA-Z0-9_./@+=-]{0,12}",
                any::<i32>().prop_map(|i| i.to_string()),
                (-1000.0f64..1000.0).prop_map(|f| format!("{f:.3}")),
                Just("true".to_owned()),
                Just("false".to_owned()),
                Just("null".to_owned()),
                ".{0,16}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                "ENC\\[AES256_GCM,data:[A-Za-z0-9+/=]{4,12},iv:[A-Za-z0-9+/=]{8},tag:[A-Za-z0-9+/=]{8},type:str\\]",
            ]
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof!["[a-z][a-z0-9_]{0,8}", ".{1,8}".prop_map(|s| serde_json::to_string(&s).unwrap())]
        }

        #[derive(Clone, Debug)]
        enum Node {
            Scalar(String),
            Map(Vec<(String, Node)>),
            List(Vec<Node>),
        }

        fn node() -> impl Strategy<Value = Node> {
            scalar().prop_map(Node::Scalar).prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec((key(), inner.clone()), 1..4).prop_map(Node::Map),
                    prop::collection::vec(inner, 1..4).prop_map(Node::List),
                ]
            })
        }

        fn write(node: &Node, indent: usize, out: &mut String) {
            let pad = " ".repeat(indent);
            match node {
                Node::Map(entries) => {
                    for (k, v) in entries {
                        match v {
                            Node::Scalar(s) => out.push_str(&format!("{pad}{k}: {s}\n")),
                            other => {
                                out.push_str(&format!("{pad}{k}:\n"));
                                write(other, indent + 4, out);
                            }
                        }
                    }
                }
                Node::List(items) => {
                    for item in items {
                        match item {
                            Node::Scalar(s) => out.push_str(&format!("{pad}- {s}\n")),
                            Node::Map(_) => {
                                let mut inner = String::new();
                                write(item, indent + 2, &mut inner);
                                out.push_str(&format!("{pad}- {}", inner.trim_start()));
                            }
                            Node::List(_) => {
                                out.push_str(&format!("{pad}-\n"));
                                write(item, indent + 4, out);
                            }
                        }
                    }
                }
                Node::Scalar(s) => out.push_str(&format!("{pad}{s}\n")),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

            #[test]
            fn the_fast_path_never_disagrees_with_the_full_parser(entries in prop::collection::vec((key(), node()), 1..5)) {
                let mut text = String::new();
                write(&Node::Map(entries), 0, &mut text);
                if let Ok(full) = serde_saphyr::from_str_with_options::<Value>(&text, crate::format::yaml_options())
                    && let Some(fast) = parse(&text)
                {
                    prop_assert_eq!(fast, full, "{}", text);
                }
            }

            #[test]
            fn the_fast_path_never_panics(text in ".{0,300}") {
                let _ = parse(&text);
            }
        }
    }

    #[test]
    fn declines_what_it_does_not_read() {
        for text in [
            "a: {b: 1}\n",
            "a: [1, 2]\n",
            "a: &x 1\nb: *x\n",
            "a: >\n  folded\n",
            "a: 0o17\n",
            "---\na: 1\n---\nb: 2\n",
            "a: !!str 1\n",
            "a: .inf\n",
        ] {
            assert!(parse(text).is_none(), "{text}");
        }
    }
}
