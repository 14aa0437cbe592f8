//! The code stays readable [issue 9]: no file of production code over 800 lines and no
//! function over 120 lines. Test code (`tests/`, `*tests.rs`, a trailing `#[cfg(test)]`
//! module) is not counted. A function is measured from its `fn` line to the closing brace
//! at its indentation, which is how rustfmt lays every function out.

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 120;

fn production_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source tree") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if !["target", "tests", ".git", "migrations", "docs"].contains(&name) {
                production_sources(&path, out);
            }
        } else if name.ends_with(".rs") && !name.ends_with("tests.rs") {
            out.push(path);
        }
    }
}

/// The lines before a file's trailing test module.
fn without_tests(text: &str) -> Vec<&str> {
    text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).collect()
}

/// (first line, length, signature) of each function with a body.
fn functions<'a>(lines: &[&'a str]) -> Vec<(usize, usize, &'a str)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = &line[..line.len() - code.len()];
        let is_fn = ["fn ", "pub fn ", "async fn ", "pub async fn ", "const fn ", "pub const fn "]
            .iter()
            .any(|p| code.starts_with(p))
            || (code.starts_with("pub(") && (code.contains(") fn ") || code.contains(") async fn ")));
        if !is_fn || code.trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = lines[i..].iter().position(|l| *l == close) {
            out.push((i + 1, end + 1, code));
        }
    }
    out
}

#[test]
fn no_production_file_over_800_lines_and_no_function_over_120() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    production_sources(root, &mut files);
    assert!(files.len() > 50, "found only {} source files under {}", files.len(), root.display());
    let mut too_big = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable source");
        let lines = without_tests(&text);
        let rel = f.strip_prefix(root).unwrap_or(f).display().to_string();
        if lines.len() > MAX_FILE_LINES {
            too_big.push(format!("{rel}: {} lines", lines.len()));
        }
        for (at, len, sig) in functions(&lines) {
            if len > MAX_FN_LINES {
                too_big.push(format!(
                    "{rel}:{at}: {len}-line function `{}`",
                    sig.chars().take(60).collect::<String>()
                ));
            }
        }
    }
    assert!(too_big.is_empty(), "over the limits:\n{}", too_big.join("\n"));
}

#[test]
fn the_measure_finds_a_long_function() {
    let mut text = String::from("pub fn long() {\n");
    text.push_str(&"    x();\n".repeat(MAX_FN_LINES));
    text.push_str("}\n");
    let lines = without_tests(&text);
    assert_eq!(functions(&lines), vec![(1, MAX_FN_LINES + 2, "pub fn long() {")]);
    assert!(functions(&["    fn declared(&self) -> u8;"]).is_empty());
}
