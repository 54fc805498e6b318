//! What goes wrong in speech: the model, ONNX Runtime, the workers, installing, listening.

use bloodbank_broker::PidLockError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error("no speech model in {} (run `bloodbank speech install-model`)", .0.display())]
    NotInstalled(PathBuf),
    #[error("speech model: cannot read {}", path.display())]
    ModelFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("speech model: {file} is not valid JSON")]
    ModelJson {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("speech model: {file} lacks {what}")]
    ModelLacks { file: &'static str, what: String },
    #[error("ONNX Runtime: {what}")]
    Runtime {
        what: String,
        #[source]
        source: ort::Error,
    },
    /// Loading the shared library failed; the reason is kept as text because every later
    /// caller gets the same answer.
    #[error("ONNX Runtime: loading {}: {reason}", library.display())]
    RuntimeLibrary { library: PathBuf, reason: String },
    #[error("the model has no output {0}")]
    MissingOutput(String),
    #[error("a speech worker task failed")]
    Worker(#[from] tokio::task::JoinError),
    #[error("the speech engine has shut down")]
    Closed,
    #[error("installing the speech model")]
    Install(#[from] InstallError),
    #[error("speech listener")]
    Listen(#[from] bloodbank_broker::BindError),
}

impl SpeechError {
    /// An ONNX Runtime call that failed, and what it was doing.
    pub(crate) fn runtime(what: impl Into<String>) -> impl FnOnce(ort::Error) -> SpeechError {
        let what = what.into();
        move |source| SpeechError::Runtime { what, source }
    }
}

impl From<ort::Error> for SpeechError {
    fn from(source: ort::Error) -> Self {
        SpeechError::Runtime {
            what: "a call failed".into(),
            source,
        }
    }
}

/// What goes wrong installing a model.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("size {size:?} is not one of {known}")]
    UnknownSize { size: String, known: String },
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the install lock in {}", dir.display())]
    Lock {
        dir: PathBuf,
        #[source]
        source: PidLockError,
    },
    #[error("running {command}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {output}")]
    Failed { command: String, output: String },
    #[error("creating a Python venv (needs python3 with venv: apt-get install python3-venv)")]
    Venv(#[source] Box<InstallError>),
    #[error("no libonnxruntime.so.* in {}", .0.display())]
    NoRuntime(PathBuf),
}

impl InstallError {
    /// A file operation on `path` that failed.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> InstallError {
        let path = path.into();
        move |source| InstallError::Io { path, source }
    }
}
