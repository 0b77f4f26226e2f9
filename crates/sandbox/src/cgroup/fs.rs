//! Reading and writing cgroup control files, listing members, and polling with a deadline.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::CgroupError;

pub(super) const PROCS: &str = "cgroup.procs";

pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A file holding one number, or `max` (read as `u64::MAX`).
pub(super) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read(path)?;
    parse_u64(text.trim()).ok_or_else(|| CgroupError::Parse {
        path: path.to_owned(),
        text,
    })
}

/// A one-number control file kept open and read again from its start at every call: opening a
/// cgroup file walks kernfs and sets up its `seq_file`, which costs more than the read itself,
/// and the warm invoke path reads one after every invocation.
#[derive(Debug)]
pub(super) struct CounterFile {
    path: PathBuf,
    file: fs::File,
}

impl CounterFile {
    pub(super) fn open(path: PathBuf) -> Result<Self, CgroupError> {
        match fs::File::open(&path) {
            Ok(file) => Ok(Self { path, file }),
            Err(source) => Err(CgroupError::Read { path, source }),
        }
    }

    /// The file's number now (a `seq_file` read at offset 0 shows the current value again).
    pub(super) fn read(&self) -> Result<u64, CgroupError> {
        use std::os::unix::fs::FileExt;
        let mut buffer = [0u8; 32];
        let length = self
            .file
            .read_at(&mut buffer, 0)
            .map_err(|source| CgroupError::Read {
                path: self.path.clone(),
                source,
            })?;
        let text = String::from_utf8_lossy(buffer.get(..length).unwrap_or_default());
        parse_u64(text.trim()).ok_or_else(|| CgroupError::Parse {
            path: self.path.clone(),
            text: text.into_owned(),
        })
    }
}

/// The value of `key` in a flat-keyed file (`key value` per line, as `memory.events`).
pub(super) fn read_keyed(path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    let text = read(path)?;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some(key) {
            return match words.next().and_then(parse_u64) {
                Some(value) => Ok(Some(value)),
                None => Err(CgroupError::Parse {
                    path: path.to_owned(),
                    text,
                }),
            };
        }
    }
    Ok(None)
}

fn parse_u64(text: &str) -> Option<u64> {
    if text == "max" {
        Some(u64::MAX)
    } else {
        text.parse().ok()
    }
}

/// Processes in the group at `dir` and in every group below it; a group that is gone holds none.
pub(super) fn processes(dir: &Path, into: &mut BTreeSet<i32>) -> Result<(), CgroupError> {
    let path = dir.join(PROCS);
    match fs::read_to_string(&path) {
        Ok(text) => {
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let pid = line.parse().map_err(|_| CgroupError::Parse {
                    path: path.clone(),
                    text: text.clone(),
                })?;
                into.insert(pid);
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CgroupError::Read { path, source }),
    }
    for child in child_groups(dir)? {
        processes(&child, into)?;
    }
    Ok(())
}

/// The groups directly below `dir` (none if `dir` is gone).
pub(super) fn child_groups(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let list_error = |source| CgroupError::List {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(list_error(source)),
    };
    let mut children = Vec::new();
    for entry in entries {
        let entry = entry.map_err(list_error)?;
        if entry.file_type().map_err(list_error)?.is_dir() {
            children.push(entry.path());
        }
    }
    children.sort();
    Ok(children)
}

/// Make the group `dir`; with `exclusive`, a group that already exists is an error.
pub(super) fn make_group(dir: &Path, exclusive: bool) -> Result<(), CgroupError> {
    match mkdir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            if exclusive {
                Err(CgroupError::Exists {
                    path: dir.to_owned(),
                })
            } else {
                Ok(())
            }
        }
        Err(source) => Err(CgroupError::Create {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Remove the group `dir` and every group below it, deepest first. The kernel refuses (`EBUSY`)
/// while a group still has processes that are exiting, so each removal is retried until
/// `deadline`. A group that is already gone counts as removed.
pub(super) fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    for child in child_groups(dir)? {
        remove_tree(&child, deadline)?;
    }
    let mut last_error = None;
    let removed = poll_until(deadline, || match rmdir(dir) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::ResourceBusy => {
            last_error = Some(err);
            Ok(false)
        }
        Err(source) => Err(CgroupError::Remove {
            path: dir.to_owned(),
            source,
        }),
    })?;
    match (removed, last_error) {
        (true, _) => Ok(()),
        (false, Some(source)) => Err(CgroupError::Remove {
            path: dir.to_owned(),
            source,
        }),
        (false, None) => Err(CgroupError::Remove {
            path: dir.to_owned(),
            source: io::Error::from(io::ErrorKind::ResourceBusy),
        }),
    }
}

fn mkdir(dir: &Path) -> io::Result<()> {
    fs::create_dir(dir)?;
    // The kernel gives a new group its control files; the fake kernel of the unit tests gives
    // it the ones every group has.
    #[cfg(test)]
    super::tests::fake_kernel_after_mkdir(dir)?;
    Ok(())
}

fn rmdir(dir: &Path) -> io::Result<()> {
    // A real cgroup directory's control files vanish with it; the fake trees of the unit tests
    // hold ordinary files, which the fake kernel removes here.
    #[cfg(test)]
    super::tests::fake_kernel_before_rmdir(dir)?;
    fs::remove_dir(dir)
}

/// Call `done` until it answers true (then `Ok(true)`) or `deadline` passes (`Ok(false)`),
/// pausing a little longer each time.
pub(super) fn poll_until(
    deadline: Instant,
    mut done: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<bool, CgroupError> {
    let mut pause = Duration::from_millis(1);
    loop {
        if done()? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// `SIGKILL` each of `pids` that still exists; returns how many were signalled.
pub(super) fn kill_each(pids: &BTreeSet<i32>, group: &Path) -> Result<usize, CgroupError> {
    use nix::sys::signal::{Signal, kill};
    let mut signalled = 0;
    // Pids 0 and 1 (and negative ones) would mean a process group, the caller or init: never ours.
    for &pid in pids.iter().filter(|&&pid| pid > 1) {
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) => signalled += 1,
            Err(nix::Error::ESRCH) => {}
            Err(source) => {
                return Err(CgroupError::Kill {
                    pid,
                    path: group.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(signalled)
}
