//! Label sets, built once per object and reused for every sample of that object.

use std::fmt::Write as _;

/// An ordered set of label pairs with its text-format rendering computed once.
///
/// Building one allocates; using one does not. Collectors keep a `LabelSet` per node, cgroup
/// or device for as long as the object lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSet {
    pairs: Vec<(String, String)>,
    text: String,
}

impl LabelSet {
    /// Builds a label set from pairs, keeping their order. Names are taken as given (callers
    /// use constant, valid names); values are escaped for the text format.
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut text = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let _ = write!(text, "{k}=\"");
            escape_label_value(&mut text, v);
            text.push('"');
        }
        LabelSet { pairs, text }
    }

    /// The same set with more pairs appended.
    pub fn with<K: Into<String>, V: Into<String>>(
        &self,
        more: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let all = self
            .pairs
            .iter()
            .cloned()
            .chain(more.into_iter().map(|(k, v)| (k.into(), v.into())));
        LabelSet::new(all)
    }

    /// The pairs, in the order given.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `a="1",b="2"`: the inside of the braces in the text format, values escaped.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Appends `value` escaped per the text format: backslash, double quote and newline.
pub fn escape_label_value(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_escapes_once() {
        let l = LabelSet::new([("a", "x"), ("b", "q\"u\\o\nte")]);
        assert_eq!(l.text(), r#"a="x",b="q\"u\\o\nte""#);
        assert_eq!(l.get("b"), Some("q\"u\\o\nte"));
        assert_eq!(l.get("c"), None);
        let m = l.with([("c", "3")]);
        assert_eq!(m.text(), r#"a="x",b="q\"u\\o\nte",c="3""#);
        assert!(LabelSet::default().is_empty());
    }
}
