//! Resource alarms, as RabbitMQ has them: when the process uses more memory than its high
//! watermark, or the data directory's disk has less free space than its limit, publishing
//! connections are told `connection.blocked` and are not read from until the alarm clears.
//! Consumers keep draining meanwhile.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::store::LogWriter;

/// How often memory and disk are looked at.
const INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub(crate) struct AlarmConfig {
    /// Resident memory (bytes) above which publishers are blocked.
    pub memory_high_watermark: u64,
    /// Free disk space (bytes) below which publishers are blocked.
    pub disk_free_limit: u64,
    /// Where the data lives (disk checks are skipped without one).
    pub data_dir: Option<PathBuf>,
    /// The message log, whose failing writes raise the disk alarm.
    pub log: Option<Arc<LogWriter>>,
}

/// Between two looks at the process's memory, bytes read from sockets count as if they had
/// all stayed: a flood is held back at once, not up to one interval late.
#[derive(Debug)]
pub struct Pressure {
    watermark: u64,
    rss_at_check: AtomicU64,
    read_since: AtomicU64,
}

impl Pressure {
    pub fn new(watermark: u64) -> Pressure {
        Pressure {
            watermark,
            rss_at_check: AtomicU64::new(resident_memory().unwrap_or(0)),
            read_since: AtomicU64::new(0),
        }
    }

    pub fn note_read(&self, bytes: usize) {
        self.read_since.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Memory may be past the watermark since the last look.
    pub fn over(&self) -> bool {
        self.rss_at_check.load(Ordering::Relaxed) + self.read_since.load(Ordering::Relaxed)
            > self.watermark
    }

    fn checked(&self, rss: u64) {
        self.rss_at_check.store(rss, Ordering::Relaxed);
        self.read_since.store(0, Ordering::Relaxed);
    }
}

/// RabbitMQ's default: 40% of the machine's memory (1 GiB if that cannot be read).
pub(crate) fn default_memory_high_watermark() -> u64 {
    total_memory().map_or(1 << 30, |m| m / 10 * 4)
}

/// Freed memory is handed back to the system this often even without an alarm.
const TRIM_EVERY: u32 = 50;

/// Starts the thread that watches memory and disk; the channel holds the reason while an
/// alarm is on. It reads /proc, asks the data disk for its free space and hands freed memory
/// back to the system, each of which can block, so it is a thread of its own, not a task. It
/// stops once `shutdown` changes.
pub(crate) fn start(
    config: AlarmConfig,
    alarm: watch::Sender<Option<String>>,
    pressure: Arc<Pressure>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("bloodbank-alarms".into())
        .spawn(move || run(config, alarm, pressure, shutdown))
        .map(|_| ())
}

fn run(
    config: AlarmConfig,
    alarm: watch::Sender<Option<String>>,
    pressure: Arc<Pressure>,
    shutdown: watch::Receiver<bool>,
) {
    let mut ticks = 0u32;
    while !shutdown.has_changed().unwrap_or(true) {
        if ticks > 0 {
            std::thread::sleep(INTERVAL);
        }
        ticks = ticks.wrapping_add(1);
        if alarm.borrow().is_some() || pressure.over() || ticks % TRIM_EVERY == 0 {
            trim();
        }
        let rss = resident_memory();
        if let Some(rss) = rss {
            pressure.checked(rss);
        }
        let reason = check(&config, rss);
        alarm.send_if_modified(|current| {
            if *current == reason {
                return false;
            }
            match &reason {
                Some(r) => tracing::warn!("resource alarm set: {r}; blocking publishers"),
                None => tracing::info!("resource alarm cleared; unblocking publishers"),
            }
            *current = reason;
            true
        });
        if alarm.is_closed() {
            return;
        }
    }
}

/// Freed memory of glibc's heap goes back to the system, so a memory alarm can clear: all of
/// it when the broker is embedded with the system allocator; with the `bloodbank` binary's
/// jemalloc, what C libraries allocate (jemalloc returns its own from background threads).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// Which alarm, if any, the process's resident memory and the data disk's free space set.
fn check(config: &AlarmConfig, rss: Option<u64>) -> Option<String> {
    if let Some(rss) = rss {
        if rss > config.memory_high_watermark {
            return Some("memory".into());
        }
    }
    if config.log.as_ref().is_some_and(|l| l.failing()) {
        return Some("disk".into());
    }
    if let Some(free) = config.data_dir.as_deref().and_then(free_disk) {
        if free < config.disk_free_limit {
            return Some("disk".into());
        }
    }
    None
}

/// This process's resident set size, from /proc.
pub(crate) fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}

fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes available to unprivileged users on the file system holding `path`.
fn free_disk(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `stat` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memory_and_disk_of_this_machine() {
        assert!(resident_memory().unwrap() > 0);
        assert!(free_disk(Path::new("/")).unwrap() > 0);
        let never = AlarmConfig {
            memory_high_watermark: u64::MAX,
            disk_free_limit: 0,
            data_dir: Some("/".into()),
            log: None,
        };
        assert_eq!(check(&never, resident_memory()), None);
        let always = AlarmConfig {
            memory_high_watermark: 1,
            ..never
        };
        assert_eq!(check(&always, resident_memory()).as_deref(), Some("memory"));
    }
}
