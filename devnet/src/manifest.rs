//! The reference worker's naive manifest reader: a substring scan, not a JSON parser.
//! Reproduced on purpose so that manifests the reference misreads are misread here too
//! (escaped quotes break values; unknown keys are ignored).

/// The only manifest fields the reference server uses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Manifest {
    pub entrypoint: Option<String>,
    pub interpreter: Option<String>,
    pub environment: Option<String>,
    pub args: Vec<String>,
    pub outputs: Vec<String>,
}

fn key_end(text: &str, key: &str) -> Option<usize> {
    let pat = format!("\"{key}\"");
    text.find(&pat).map(|i| i + pat.len())
}

/// `"key"` then `:` then the text between the next two double quotes.
fn scan_string(text: &str, key: &str) -> Option<String> {
    let after = key_end(text, key)?;
    let rest = &text[after..];
    let colon = rest.find(':')?;
    let rest = &rest[colon + 1..];
    let open = rest.find('"')?;
    let rest = &rest[open + 1..];
    let close = rest.find('"')?;
    Some(rest[..close].to_string())
}

/// `"key"` then `[` ... `]`, collecting every double-quoted run inside.
fn scan_array(text: &str, key: &str) -> Vec<String> {
    let Some(after) = key_end(text, key) else { return Vec::new() };
    let rest = &text[after..];
    let Some(open) = rest.find('[') else { return Vec::new() };
    let rest = &rest[open + 1..];
    let Some(close) = rest.find(']') else { return Vec::new() };
    let mut inner = &rest[..close];
    let mut out = Vec::new();
    while let Some(a) = inner.find('"') {
        let r = &inner[a + 1..];
        let Some(b) = r.find('"') else { break };
        out.push(r[..b].to_string());
        inner = &r[b + 1..];
    }
    out
}

impl Manifest {
    /// Scans manifest text the way the reference does.
    pub fn scan(text: &str) -> Manifest {
        Manifest {
            entrypoint: scan_string(text, "entrypoint").filter(|s| !s.is_empty()),
            interpreter: scan_string(text, "interpreter").filter(|s| !s.is_empty()),
            environment: scan_string(text, "environment"),
            args: scan_array(text, "args"),
            outputs: scan_array(text, "outputs"),
        }
    }

    /// Fills fields that are absent here from `other` (used for `job.json`).
    pub fn merge_missing(&mut self, other: &Manifest) {
        if self.entrypoint.is_none() {
            self.entrypoint = other.entrypoint.clone();
        }
        if self.interpreter.is_none() {
            self.interpreter = other.interpreter.clone();
        }
        if self.environment.is_none() {
            self.environment = other.environment.clone();
        }
        if self.args.is_empty() {
            self.args = other.args.clone();
        }
        if self.outputs.is_empty() {
            self.outputs = other.outputs.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_like_reference() {
        let m = Manifest::scan(
            r#"{"entrypoint": "main.py", "interpreter":"python3", "args":["--input","data.csv","hello world"], "outputs":["*.txt","results/*"], "timeout": 5}"#,
        );
        assert_eq!(m.entrypoint.as_deref(), Some("main.py"));
        assert_eq!(m.interpreter.as_deref(), Some("python3"));
        assert_eq!(m.environment, None);
        assert_eq!(m.args, vec!["--input", "data.csv", "hello world"]);
        assert_eq!(m.outputs, vec!["*.txt", "results/*"]);
        assert_eq!(Manifest::scan("not json").entrypoint, None);
        assert_eq!(Manifest::scan(r#"{"entrypoint":"a\"b.py"}"#).entrypoint.as_deref(), Some("a\\"));
    }
}
