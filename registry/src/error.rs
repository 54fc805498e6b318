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
    #[error("reading the schemas at a git revision")]
    Git(#[from] GitError),
}

/// What goes wrong reading a schema tree out of git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("running git in {dir}")]
    Spawn {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("git {args}: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("git {args} printed something that is not UTF-8")]
    NotUtf8 {
        args: String,
        #[source]
        source: std::string::FromUtf8Error,
    },
    #[error("{revision} has no schemas under {dir}")]
    NoSchemas { revision: String, dir: String },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
