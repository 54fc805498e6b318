use std::fmt;

/// One thing wrong with a schema tree: the file, where in it (a JSON pointer) and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub file: String,
    pub pointer: String,
    pub reason: String,
}

impl Problem {
    pub fn new(
        file: impl Into<String>,
        pointer: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Problem {
            file: file.into(),
            pointer: pointer.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}: {}", self.file, self.pointer, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{} problem(s):\n{}", .0.len(), list(.0))]
    Invalid(Vec<Problem>),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Git(String),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
