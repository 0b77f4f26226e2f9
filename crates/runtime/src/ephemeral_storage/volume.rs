//! One `/tmp` volume: a sparse image file formatted ext4, attached to a loop device and mounted
//! at a directory of its own, which the sandbox binds at `/tmp`.
//!
//! Size rule: the image is the smallest whole number of MiB whose ext4 leaves at least
//! `EphemeralStorage` MiB available (statfs `f_bavail`) once formatted; the estimate of ext4's
//! overhead ([`estimated_available_blocks`]) errs on the large side by less than a block per
//! block group, so a function can write `EphemeralStorage` MiB of file data and gets ENOSPC
//! within [`MAX_SLACK_MIB`] beyond it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use kappa_sandbox::loop_device::{self, AttachOptions, LoopError};
use nix::mount::{MntFlags, MsFlags};
use thiserror::Error;

use super::TmpOwner;

const MIB: u64 = 1 << 20;
const BLOCK_SIZE: u64 = 4096;
/// Blocks per ext4 block group at a 4 KiB block size.
const BLOCKS_PER_GROUP: u64 = 32_768;
/// Bytes of disk per inode (`-i`): Lambda-like room for many small files.
const BYTES_PER_INODE: u64 = 16_384;
const INODE_SIZE: u64 = 256;
/// ext4's usual features, without `has_journal`, `resize_inode` or anything else that takes
/// space the size rule does not count.
const FEATURES: &str = "none,ext_attr,dir_index,filetype,extent,flex_bg,sparse_super,large_file,huge_file,dir_nlink,extra_isize,64bit,metadata_csum";
/// At most this much space beyond `EphemeralStorage` is usable.
pub const MAX_SLACK_MIB: u64 = 2;
/// Mode of the volume's root, the sandbox's `/tmp`: its runtime user's alone.
pub const TMP_MODE: u32 = 0o700;

#[derive(Debug, Error)]
pub enum VolumeError {
    #[error("creating image {path}")]
    Image {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("running {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("formatting {path} failed ({status}): {stderr}")]
    Format {
        path: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("attaching a loop device")]
    Attach(#[source] LoopError),
    #[error("mounting {device} at {target}")]
    Mount {
        device: PathBuf,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("preparing the root of {target}")]
    Root {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The ext4 formatter (`mke2fs`), found once.
///
/// `mke2fs` runs once per image size: that image is kept as a template (`.template-<MiB>MiB.ext4`
/// next to the volumes) and each new volume of that size is a copy of the template's data
/// extents into a fresh sparse file. A freshly formatted image holds a few hundred KiB of
/// metadata in a handful of extents, and everything else reads as zeros (holes): the copy takes
/// a fraction of a millisecond where `mke2fs`, a process per volume, takes milliseconds (and
/// scans every mount of the host to check that the image is not mounted). The copies share the
/// template's file-system UUID and directory-hash seed.
#[derive(Debug)]
pub struct Formatter {
    program: PathBuf,
    /// `assume_storage_prezeroed` (e2fsprogs 1.47) skips zeroing inode tables: a fresh sparse
    /// file reads as zeros. Dropped after the first refusal by an older mke2fs.
    prezeroed: AtomicBool,
    /// Formatted templates by image length in bytes (made once per server run: the directory
    /// is emptied at every start and stop).
    templates: Mutex<HashMap<u64, PathBuf>>,
}

impl Formatter {
    /// `mke2fs` from `PATH`, or the usual sbin directories a server's `PATH` may lack.
    pub fn find() -> Option<Self> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
            .map(|dir| dir.join("mke2fs"))
            .find(|candidate| candidate.is_file())
            .map(|program| Self {
                program,
                prezeroed: AtomicBool::new(true),
                templates: Mutex::new(HashMap::new()),
            })
    }

    /// Make `image` (a fresh sparse file, all zeros) an ext4 file system formatted with the
    /// options the size rule assumes: a copy of the template of its length, which is formatted
    /// first if there is none yet.
    pub fn format(&self, image: &Path) -> Result<(), VolumeError> {
        let image_error = |source| VolumeError::Image {
            path: image.to_path_buf(),
            source,
        };
        let length = std::fs::metadata(image).map_err(image_error)?.len();
        let template = {
            let mut templates = self
                .templates
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match templates.get(&length) {
                Some(template) => template.clone(),
                None => {
                    let template =
                        image.with_file_name(format!(".template-{}MiB.ext4", length / MIB));
                    self.make_template(&template, length)?;
                    templates.insert(length, template.clone());
                    template
                }
            }
        };
        copy_data_extents(&template, image).map_err(image_error)
    }

    /// Format a new sparse file of `length` bytes at `template` (replacing any file there).
    fn make_template(&self, template: &Path, length: u64) -> Result<(), VolumeError> {
        let image_error = |source| VolumeError::Image {
            path: template.to_path_buf(),
            source,
        };
        match std::fs::remove_file(template) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(image_error(err)),
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(template)
            .and_then(|file| file.set_len(length))
            .map_err(image_error)?;
        self.format_with_mke2fs(template)
    }

    /// Format `image` (a file) as ext4 with `mke2fs`.
    fn format_with_mke2fs(&self, image: &Path) -> Result<(), VolumeError> {
        let first = self.run(image, self.prezeroed.load(Ordering::Relaxed))?;
        let Err(failure) = first else {
            return Ok(());
        };
        let VolumeError::Format { ref stderr, .. } = failure else {
            return Err(failure);
        };
        if self.prezeroed.load(Ordering::Relaxed) && stderr.contains("assume_storage_prezeroed") {
            self.prezeroed.store(false, Ordering::Relaxed);
            return self.run(image, false)?;
        }
        Err(failure)
    }

    /// Run mke2fs once: `Err` when it cannot run, `Ok(Err)` when it refuses.
    fn run(&self, image: &Path, prezeroed: bool) -> Result<Result<(), VolumeError>, VolumeError> {
        let mut extended = OsString::from("lazy_itable_init=1,nodiscard");
        if prezeroed {
            extended.push(",assume_storage_prezeroed=1");
        }
        let output = Command::new(&self.program)
            .args(["-q", "-F", "-t", "ext4"])
            // Every feature named, none from the host's mke2fs.conf, so the overhead is known.
            // Scratch space: no journal (nothing to recover after a crash: the image is
            // deleted), no resize reserve, no blocks reserved for root.
            .args(["-O", FEATURES, "-G", "16", "-m", "0"])
            .args(["-b", &BLOCK_SIZE.to_string()])
            .args(["-I", &INODE_SIZE.to_string()])
            .args(["-i", &BYTES_PER_INODE.to_string()])
            .arg("-E")
            .arg(extended)
            .arg(image)
            .output()
            .map_err(|source| VolumeError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(Ok(()));
        }
        Ok(Err(VolumeError::Format {
            path: image.to_path_buf(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }))
    }
}

/// Copy every data extent of `from` to the same offset of `to`, a sparse file as long and all
/// zeros, so that `to` reads as `from` does and keeps its holes.
fn copy_data_extents(from: &Path, to: &Path) -> std::io::Result<()> {
    use nix::unistd::{Whence, lseek};
    let source = File::open(from)?;
    let target = std::fs::OpenOptions::new().write(true).open(to)?;
    let length = i64::try_from(source.metadata()?.len()).map_err(std::io::Error::other)?;
    let mut position = 0_i64;
    while position < length {
        let start = match lseek(&source, position, Whence::SeekData) {
            Ok(start) => start,
            Err(nix::Error::ENXIO) => break, // only a hole is left
            Err(err) => return Err(err.into()),
        };
        let end = lseek(&source, start, Whence::SeekHole)?;
        let mut from_offset = start;
        let mut to_offset = start;
        while from_offset < end {
            let wanted = usize::try_from(end - from_offset).map_err(std::io::Error::other)?;
            let copied = nix::fcntl::copy_file_range(
                &source,
                Some(&mut from_offset),
                &target,
                Some(&mut to_offset),
                wanted,
            )?;
            if copied == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the template ended early",
                ));
            }
        }
        position = end;
    }
    Ok(())
}

/// The image size, in MiB, for `EphemeralStorage` of `size_mib`.
pub fn image_mib(size_mib: u32) -> u64 {
    let wanted = u64::from(size_mib) * MIB / BLOCK_SIZE;
    let mut mib = u64::from(size_mib);
    while estimated_available_blocks(mib * MIB / BLOCK_SIZE) < wanted {
        mib += 1;
    }
    mib
}

/// What ext4, formatted as [`Formatter`] does, leaves available in `blocks` blocks: minus the
/// inode tables, per group two bitmaps and (an upper bound of) superblock and descriptor
/// backups, the root directory, and the clusters the kernel keeps back for delayed
/// allocation (2%, at most 4096).
pub fn estimated_available_blocks(blocks: u64) -> u64 {
    let groups = blocks.div_ceil(BLOCKS_PER_GROUP);
    let inode_tables = (blocks * BLOCK_SIZE / BYTES_PER_INODE * INODE_SIZE).div_ceil(BLOCK_SIZE);
    let kernel_reserve = (blocks / 50).min(4096);
    blocks.saturating_sub(inode_tables + 3 * groups + 32 + kernel_reserve)
}

/// A formatted, attached and mounted volume.
#[derive(Debug)]
pub struct Volume {
    pub size_mib: u32,
    pub image: PathBuf,
    pub device: PathBuf,
    pub mount_point: PathBuf,
}

impl Volume {
    /// Create `<dir>/<name>.img`, format it, attach it and mount it at `<dir>/<name>` with its
    /// root owned by `owner`, mode [`TMP_MODE`], empty. Leaves nothing behind on failure.
    pub fn create(
        dir: &Path,
        name: &str,
        size_mib: u32,
        owner: TmpOwner,
        formatter: &Formatter,
    ) -> Result<Self, VolumeError> {
        let image = dir.join(format!("{name}.img"));
        let mut volume = Self {
            size_mib,
            image,
            device: PathBuf::new(),
            mount_point: dir.join(name),
        };
        match volume.build(owner, formatter) {
            Ok(()) => Ok(volume),
            Err(err) => {
                volume.destroy();
                Err(err)
            }
        }
    }

    fn build(&mut self, owner: TmpOwner, formatter: &Formatter) -> Result<(), VolumeError> {
        let image_error = |source| VolumeError::Image {
            path: self.image.clone(),
            source,
        };
        // Only root may read a function's /tmp through its image.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.image)
            .and_then(|file| file.set_len(image_mib(self.size_mib) * MIB))
            .map_err(image_error)?;
        formatter.format(&self.image)?;
        self.device = loop_device::attach(
            &self.image,
            AttachOptions {
                autoclear: false,
                direct_io: true,
            },
        )
        .map_err(VolumeError::Attach)?;
        let root_error = |source| VolumeError::Root {
            target: self.mount_point.clone(),
            source,
        };
        std::fs::create_dir(&self.mount_point).map_err(root_error)?;
        nix::mount::mount(
            Some(&self.device),
            &self.mount_point,
            Some("ext4"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(|source| VolumeError::Mount {
            device: self.device.clone(),
            target: self.mount_point.clone(),
            source,
        })?;
        // Lambda's /tmp starts empty.
        std::fs::remove_dir(self.mount_point.join("lost+found")).map_err(root_error)?;
        std::os::unix::fs::chown(&self.mount_point, Some(owner.uid), Some(owner.gid))
            .map_err(root_error)?;
        std::fs::set_permissions(&self.mount_point, std::fs::Permissions::from_mode(TMP_MODE))
            .map_err(root_error)
    }

    /// Unmount, detach and delete; every step is attempted, failures are logged. A copy of the
    /// mount in a sandbox's namespace keeps the device until that environment's processes are
    /// gone; the kernel detaches it then.
    pub fn destroy(&mut self) {
        match nix::mount::umount2(&self.mount_point, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => {}
            Err(err) => {
                tracing::warn!(mount_point = %self.mount_point.display(), %err, "unmounting a /tmp volume failed")
            }
        }
        match std::fs::remove_dir(&self.mount_point) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(mount_point = %self.mount_point.display(), %err, "removing a /tmp mount point failed")
            }
        }
        if !self.device.as_os_str().is_empty()
            && let Err(err) = loop_device::detach(&self.device)
        {
            tracing::warn!(device = %self.device.display(), error = %err, "detaching a /tmp loop device failed");
        }
        self.device = PathBuf::new();
        match std::fs::remove_file(&self.image) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(image = %self.image.display(), %err, "deleting a /tmp image failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_copy_reads_as_the_template_and_keeps_its_holes() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let template = dir.path().join("template");
        let copy = dir.path().join("copy");
        let length = 64 * MIB;
        let mut file = File::create(&template).expect("the template");
        file.set_len(length).expect("its length");
        for (offset, byte) in [(0, 0xa5_u8), (MIB, 0x5a), (length - 8192, 0x3c)] {
            file.seek(SeekFrom::Start(offset)).expect("seek");
            file.write_all(&vec![byte; 8192]).expect("data");
        }
        drop(file);
        File::create(&copy)
            .and_then(|file| file.set_len(length))
            .expect("the copy's sparse file");
        copy_data_extents(&template, &copy).expect("the copy");
        let read = |path: &Path| {
            let mut bytes = Vec::new();
            File::open(path)
                .and_then(|mut file| file.read_to_end(&mut bytes))
                .expect("read back");
            bytes
        };
        assert!(
            read(&template) == read(&copy),
            "the copy differs from the template"
        );
        // Three 8 KiB extents, not 64 MiB: the holes stayed holes (st_blocks is in 512 B units).
        let allocated = std::fs::metadata(&copy).expect("metadata").blocks() * 512;
        assert!(
            allocated <= 3 * 8192 + 3 * 4096,
            "{allocated} bytes allocated"
        );
    }

    #[test]
    fn images_are_a_little_larger_than_the_storage() {
        for size in [512, 513, 1024, 4096, 10_240] {
            let image = image_mib(size);
            let available = estimated_available_blocks(image * MIB / BLOCK_SIZE) * BLOCK_SIZE;
            assert!(available >= u64::from(size) * MIB, "{size}: {image}");
            // One MiB less would not do: the image is the smallest that fits.
            let smaller = estimated_available_blocks((image - 1) * MIB / BLOCK_SIZE) * BLOCK_SIZE;
            assert!(smaller < u64::from(size) * MIB, "{size}: {image}");
        }
        // 512 MiB of storage: 8 MiB of inode tables, ~10 MiB held back by the kernel.
        assert!((530..=536).contains(&image_mib(512)), "{}", image_mib(512));
    }
}
