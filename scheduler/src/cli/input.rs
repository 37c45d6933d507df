//! Reading Kubernetes objects from files (or standard input) for `place` and `decode`. The decoding
//! itself (YAML/JSON/`List`/multi-document text into objects, typing, workload expansion) is the
//! core's [`sliceguard_core::wire::manifest`]; this module reads the files and puts the file's name
//! in front of every error and skipped object.

use k8s_openapi::api::core::v1::{Node, Pod};
use sliceguard_core::wire::manifest::{self, ManifestError};
use std::fmt;
use std::path::{Path, PathBuf};

pub use sliceguard_core::wire::manifest::{RawObject, expand};

/// Bad input: which file, which object, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The file (`-` for standard input).
    pub file: PathBuf,
    /// The object (`Deployment default/web`, `document 3`), if known.
    pub object: Option<String>,
    /// What is wrong, naming the field.
    pub message: String,
}

impl InputError {
    fn in_file(path: &Path, e: ManifestError) -> Self {
        InputError {
            file: path.to_path_buf(),
            object: e.object,
            message: e.message,
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(object) = &self.object {
            write!(f, ": {object}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

/// Reads a file (or standard input for `-`).
pub fn read_text(path: &Path) -> Result<String, InputError> {
    let err = |message: String| InputError {
        file: path.to_path_buf(),
        object: None,
        message,
    };
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| err(format!("cannot read standard input: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))
    }
}

/// Every object in a file, with `List`s flattened.
pub fn read_objects(path: &Path) -> Result<Vec<RawObject>, InputError> {
    let text = read_text(path)?;
    parse_objects(path, &text)
}

/// Every object in `text` (read from `path`), with `List`s flattened.
pub fn parse_objects(path: &Path, text: &str) -> Result<Vec<RawObject>, InputError> {
    manifest::parse_objects(text).map_err(|e| InputError::in_file(path, e))
}

/// Types a raw object read from `path`, naming the field path on error.
pub fn typed<T: serde::de::DeserializeOwned>(
    path: &Path,
    object: &RawObject,
) -> Result<T, InputError> {
    manifest::typed(object).map_err(|e| InputError::in_file(path, e))
}

fn in_file(path: &Path, skipped: Vec<String>) -> impl Iterator<Item = String> + '_ {
    skipped
        .into_iter()
        .map(move |s| format!("{}: {s}", path.display()))
}

/// The nodes in a file (other kinds are reported in `skipped`).
pub fn nodes(path: &Path, skipped: &mut Vec<String>) -> Result<Vec<Node>, InputError> {
    let mut here = Vec::new();
    let out =
        manifest::nodes(read_objects(path)?, &mut here).map_err(|e| InputError::in_file(path, e));
    skipped.extend(in_file(path, here));
    out
}

/// The pods in a file, with workloads expanded into their pods in file order.
pub fn pods(path: &Path, skipped: &mut Vec<String>) -> Result<Vec<Pod>, InputError> {
    let mut here = Vec::new();
    let out =
        manifest::pods(read_objects(path)?, &mut here).map_err(|e| InputError::in_file(path, e));
    skipped.extend(in_file(path, here));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_skipped_objects_name_the_file() {
        let file =
            std::env::temp_dir().join(format!("sliceguard-input-{}.yaml", std::process::id()));
        let yaml = "kind: Service\nmetadata: {name: svc}\n---\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n";
        std::fs::write(&file, yaml).unwrap();
        let mut skipped = vec![];
        let err = pods(&file, &mut skipped).unwrap_err().to_string();
        std::fs::remove_file(&file).ok();
        assert_eq!(
            err,
            format!(
                "{}: Deployment web (document 2): field spec.template is missing",
                file.display()
            )
        );
        assert_eq!(
            skipped,
            [format!(
                "{}: Service svc (document 1) is not a Pod or a workload (Service is not expanded)",
                file.display()
            )]
        );
        let p = Path::new("test.yaml");
        let err = parse_objects(p, "metadata: {name: a}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "test.yaml: document 1: field kind is missing");
        let err = read_objects(Path::new("/nonexistent/sliceguard.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/sliceguard.yaml: cannot read: ")
        );
    }
}
