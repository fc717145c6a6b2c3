//! `{{variable}}` templates for command arguments, environment values and descriptions.
//!
//! A template is text with `{{name}}` placeholders. Names start with a letter or `_` and go on with letters, digits,
//! `_`, `-` and `.`; whitespace
//! inside the braces is ignored. `{{secrets.NAME}}` is replaced by a secret's value, which is then masked wherever it
//! would be shown. `{{{{` stands for a literal `{{`, for the Go templates of kubectl and docker:
//! `--format '{{{{.Id}}'` passes `--format '{{.Id}}'`.

use std::fmt;

use crate::error::TemplateError;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
}

/// A parsed template.
///
/// ```
/// use gantry_core::Template;
/// let t = Template::parse("deploy {{service}}:{{ image }}").unwrap();
/// assert_eq!(t.variables().collect::<Vec<_>>(), ["service", "image"]);
/// let out = t.render(|name| Some(format!("<{name}>"))).unwrap();
/// assert_eq!(out, "deploy <service>:<image>");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

/// The prefix that makes a template variable refer to a secret.
pub(crate) const SECRET_PREFIX: &str = "secrets.";

impl Template {
    /// Parses `source`; an unclosed `{{`, an empty name or a name with other characters is an error naming the
    /// position.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            if rest[open + 2..].starts_with("{{") {
                pieces.push(Piece::Text("{{".to_owned()));
                offset += open + 4;
                rest = &rest[open + 4..];
                continue;
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError::Unclosed { template: source.to_owned(), offset: offset + open });
            };
            let name = after[..close].trim();
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(TemplateError::BadName {
                    template: source.to_owned(),
                    name: name.to_owned(),
                    offset: offset + open,
                });
            }
            pieces.push(Piece::Var(name.to_owned()));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self { source: source.to_owned(), pieces })
    }

    /// The text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables of several templates, each once, in the order they first appear: what a step's
    /// [`variables`](crate::Step::variables) returns.
    pub fn variables_of<'a>(sources: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, TemplateError> {
        let mut names: Vec<String> = Vec::new();
        for source in sources {
            for name in Template::parse(source)?.variables() {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    /// The variable names the template refers to, in order of appearance (repeats included).
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Renders with `lookup`; the first variable it does not know is an error.
    pub fn render(&self, mut lookup: impl FnMut(&str) -> Option<String>) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.source.len());
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(name) => match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        return Err(TemplateError::UnknownVariable {
                            template: self.source.clone(),
                            name: name.clone(),
                        });
                    }
                },
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_position() {
        let e = Template::parse("a {{b").unwrap_err();
        assert_eq!(e.to_string(), "unclosed `{{` at byte 2 in template `a {{b`");
        let e = Template::parse("x {{ a b }}").unwrap_err();
        assert!(e.to_string().contains("`a b`"), "{e}");
        assert!(Template::parse("{{}}").is_err());
    }

    #[test]
    fn plain_text_and_adjacent_variables() {
        let t = Template::parse("{{a}}{{b}}-c").unwrap();
        assert_eq!(t.render(|n| Some(n.to_uppercase())).unwrap(), "AB-c");
        assert_eq!(Template::parse("no vars").unwrap().variables().count(), 0);
    }

    #[test]
    fn four_braces_are_a_literal_pair() {
        let t = Template::parse("--format '{{{{.Id}}' {{name}}").unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), ["name"]);
        assert_eq!(t.render(|_| Some("web".into())).unwrap(), "--format '{{.Id}}' web");
        assert!(Template::parse("{{.Id}}").is_err(), "without the escape it is a bad name");
    }

    #[test]
    fn unknown_variable_is_an_error() {
        let t = Template::parse("{{known}} {{unknown}}").unwrap();
        let e = t.render(|n| (n == "known").then(|| "k".into())).unwrap_err();
        assert!(matches!(e, TemplateError::UnknownVariable { ref name, .. } if name == "unknown"));
    }
}
