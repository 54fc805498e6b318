#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// The model is not installed, or its files are not what they should be.
    #[error("speech model: {0}")]
    Model(String),
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("installing the speech model: {0}")]
    Install(String),
    #[error("speech listener")]
    Listen(#[from] bloodbank_broker::BindError),
}

impl From<ort::Error> for SpeechError {
    fn from(e: ort::Error) -> Self {
        SpeechError::Runtime(e.to_string())
    }
}
