//! Loop devices: a regular file shown as a block device, so that an environment's `/tmp` can be
//! a file system of its own, capped at its size and stored on disk.
//!
//! Attaching uses `LOOP_CTL_GET_FREE` and `LOOP_CONFIGURE` (Linux 5.8), or `LOOP_SET_FD` +
//! `LOOP_SET_STATUS64` on older kernels. Which file backs each device is read from
//! `/sys/block/loop*/loop/backing_file`, so a restarted server can find what an earlier run left.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc;
use thiserror::Error;

const LOOP_CONTROL: &str = "/dev/loop-control";
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
/// Detach by itself once the last user (the mounted file system) lets go.
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// Read and write the backing file with direct I/O: no second copy in the page cache.
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LO_NAME_SIZE: usize = 64;
/// Another process may take the free device between the two calls: try again this often.
const ATTACH_ATTEMPTS: usize = 64;

/// Attaches of this process, one at a time: threads racing for the same free device would
/// otherwise make each other fail with EBUSY (a burst of cold starts makes volumes in parallel).
static ATTACHING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Debug, Error)]
pub enum LoopError {
    #[error("opening {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("finding a free loop device")]
    GetFree(#[source] Errno),
    #[error("attaching {image} to {device}")]
    Attach {
        image: PathBuf,
        device: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("detaching {device}")]
    Detach {
        device: PathBuf,
        #[source]
        source: Errno,
    },
}

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// How a device is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachOptions {
    /// Detach as soon as nothing holds the device open (set after mounting it, the mount
    /// keeps it until it is unmounted in every mount namespace).
    pub autoclear: bool,
    /// Direct I/O on the backing file (falls back to buffered I/O where refused).
    pub direct_io: bool,
}

/// Attach `image` (opened read-write) to a free loop device; returns the device's path
/// (`/dev/loopN`). The device keeps the file open: the image may be unlinked afterwards.
pub fn attach(image: &Path, options: AttachOptions) -> Result<PathBuf, LoopError> {
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(image)
        .map_err(|source| LoopError::Open {
            path: image.to_path_buf(),
            source,
        })?;
    let control = open_rw(Path::new(LOOP_CONTROL))?;
    let mut flags = if options.autoclear {
        LO_FLAGS_AUTOCLEAR
    } else {
        0
    };
    if options.direct_io {
        flags |= LO_FLAGS_DIRECT_IO;
    }
    let mut last = Errno::EBUSY;
    let mut device_path = PathBuf::new();
    let _one_at_a_time = ATTACHING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for attempt in 0..ATTACH_ATTEMPTS {
        if attempt > 0 {
            // Another process got there first: let it finish.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1; the
        // descriptor is an open /dev/loop-control.
        let number =
            Errno::result(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) })
                .map_err(LoopError::GetFree)?;
        device_path = PathBuf::from(format!("/dev/loop{number}"));
        let device = open_rw(&device_path)?;
        match configure(&device, &backing, image, flags) {
            Ok(()) => return Ok(device_path),
            // Taken by someone else between GET_FREE and CONFIGURE.
            Err(Errno::EBUSY) => last = Errno::EBUSY,
            Err(Errno::EINVAL) if flags & LO_FLAGS_DIRECT_IO != 0 => {
                flags &= !LO_FLAGS_DIRECT_IO;
                last = Errno::EINVAL;
            }
            Err(source) => {
                return Err(LoopError::Attach {
                    image: image.to_path_buf(),
                    device: device_path,
                    source,
                });
            }
        }
    }
    Err(LoopError::Attach {
        image: image.to_path_buf(),
        device: device_path,
        source: last,
    })
}

/// `LOOP_CONFIGURE`, or `LOOP_SET_FD` + `LOOP_SET_STATUS64` where the kernel lacks it.
fn configure(device: &File, backing: &File, image: &Path, flags: u32) -> Result<(), Errno> {
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: flags,
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    // Informational only (sysfs reports the real path); truncated, NUL-terminated.
    let name = image.as_os_str().as_encoded_bytes();
    let len = name.len().min(LO_NAME_SIZE - 1);
    info.lo_file_name[..len].copy_from_slice(&name[..len]);
    let fd = u32::try_from(backing.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    let config = LoopConfig {
        fd,
        block_size: 0,
        info,
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads a `struct loop_config`, which `LoopConfig` reproduces
    // (repr(C), same field order and sizes); the pointer is valid for the call's duration.
    let configured = Errno::result(unsafe {
        libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE as _, &raw const config)
    });
    match configured {
        Ok(_) => Ok(()),
        Err(Errno::ENOTTY) => {
            // SAFETY: LOOP_SET_FD takes the backing file's descriptor as its integer argument.
            Errno::result(unsafe {
                libc::ioctl(
                    device.as_raw_fd(),
                    LOOP_SET_FD as _,
                    backing.as_raw_fd() as libc::c_ulong,
                )
            })?;
            // SAFETY: LOOP_SET_STATUS64 reads a `struct loop_info64`, which `LoopInfo64`
            // reproduces; the pointer is valid for the call's duration.
            let status = Errno::result(unsafe {
                libc::ioctl(device.as_raw_fd(), LOOP_SET_STATUS64 as _, &raw const info)
            });
            if let Err(err) = status {
                // SAFETY: LOOP_CLR_FD takes no argument; undoes the LOOP_SET_FD above.
                let _ = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD as _) };
                return Err(err);
            }
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Detach `device`. A device still in use (mounted somewhere) is marked to detach by itself
/// when released. A device that is already free is not an error.
pub fn detach(device: &Path) -> Result<(), LoopError> {
    let file = match open_rw(device) {
        Ok(file) => file,
        Err(LoopError::Open { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    // SAFETY: LOOP_CLR_FD takes no argument; the descriptor is an open loop device.
    match Errno::result(unsafe { libc::ioctl(file.as_raw_fd(), LOOP_CLR_FD as _) }) {
        Ok(_) | Err(Errno::ENXIO) => Ok(()),
        Err(source) => Err(LoopError::Detach {
            device: device.to_path_buf(),
            source,
        }),
    }
}

/// Whether this process can attach loop devices at all (the control device opens).
pub fn available() -> bool {
    open_rw(Path::new(LOOP_CONTROL)).is_ok()
}

/// A loop device in use and the file behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedLoop {
    /// `/dev/loopN`.
    pub device: PathBuf,
    /// The backing file's path as the kernel reports it (without the ` (deleted)` suffix of
    /// an unlinked file).
    pub backing_file: PathBuf,
}

/// Every attached loop device, read from `sys_block` (production: `/sys/block`).
pub fn attached(sys_block: &Path) -> Vec<AttachedLoop> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        let text = text.trim_end_matches('\n');
        let text = text.strip_suffix(" (deleted)").unwrap_or(text);
        if text.is_empty() {
            continue;
        }
        found.push(AttachedLoop {
            device: Path::new("/dev").join(name),
            backing_file: PathBuf::from(text),
        });
    }
    found.sort_by(|a, b| a.device.cmp(&b.device));
    found
}

fn open_rw(path: &Path) -> Result<File, LoopError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| LoopError::Open {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn attached_devices_are_read_from_sysfs() {
        let sys = tempfile::tempdir().unwrap();
        for (name, backing) in [
            ("loop0", "/data/environments/a.img\n"),
            ("loop1", "/data/environments/b.img (deleted)\n"),
            ("loop2", ""),
        ] {
            std::fs::create_dir_all(sys.path().join(name).join("loop")).unwrap();
            std::fs::write(sys.path().join(name).join("loop/backing_file"), backing).unwrap();
        }
        std::fs::create_dir_all(sys.path().join("loop3")).unwrap(); // free: no loop/ directory
        std::fs::create_dir_all(sys.path().join("vda/loop")).unwrap();
        assert_eq!(
            attached(sys.path()),
            vec![
                AttachedLoop {
                    device: PathBuf::from("/dev/loop0"),
                    backing_file: PathBuf::from("/data/environments/a.img"),
                },
                AttachedLoop {
                    device: PathBuf::from("/dev/loop1"),
                    backing_file: PathBuf::from("/data/environments/b.img"),
                },
            ]
        );
    }

    #[test]
    fn a_file_attaches_and_detaches() {
        if !nix::unistd::geteuid().is_root() || !available() {
            eprintln!("skipped: needs root and /dev/loop-control");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("test.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let device = attach(
            &image,
            AttachOptions {
                autoclear: false,
                direct_io: true,
            },
        )
        .unwrap();
        let canonical = image.canonicalize().unwrap();
        assert!(
            attached(Path::new("/sys/block"))
                .iter()
                .any(|l| l.device == device && l.backing_file == canonical)
        );
        detach(&device).unwrap();
        assert!(
            !attached(Path::new("/sys/block"))
                .iter()
                .any(|l| l.backing_file == canonical)
        );
        // Detaching a free device is not an error.
        detach(&device).unwrap();
    }

    #[test]
    fn many_threads_attach_at_once() {
        if !nix::unistd::geteuid().is_root() || !available() {
            eprintln!("skipped: needs root and /dev/loop-control");
            return;
        }
        const THREADS: usize = 96;
        let dir = tempfile::tempdir().unwrap();
        let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|i| {
                let image = dir.path().join(format!("{i}.img"));
                std::fs::File::create(&image)
                    .unwrap()
                    .set_len(1 << 20)
                    .unwrap();
                let start = std::sync::Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait();
                    attach(
                        &image,
                        AttachOptions {
                            autoclear: false,
                            direct_io: true,
                        },
                    )
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for device in results.iter().flatten() {
            detach(device).unwrap();
        }
        let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(failed.is_empty(), "{failed:?}");
    }
}
