//! Mounts passed between mount namespaces as file descriptors (Linux 5.2's mount API).
//!
//! A prepared sandbox already lives in its own mount namespace, built before its function was
//! known, so the host directories of that function (code, layers, runtime files, the `/tmp`
//! volume mounted a moment ago) cannot simply be bound by path: they are not in its copy of the
//! host's mounts. The server clones each one as a detached mount (`open_tree` with
//! `OPEN_TREE_CLONE`), sends the descriptors over the sandbox's channel, and the sandbox
//! attaches them at their targets (`move_mount`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `open_tree` flag: return a detached copy of the mount tree at the path, not the tree itself.
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `open_tree` flag: copy the mounts below the path too (as `MS_BIND | MS_REC`).
const AT_RECURSIVE: libc::c_uint = 0x8000;
/// `move_mount` flag: the source is the descriptor itself (an empty path).
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// A detached copy of the mount tree at `path` (and the mounts below it), closed on exec. Needs
/// CAP_SYS_ADMIN. Dropping it without attaching it unmounts the copy; `path` is not affected.
pub fn clone_tree(path: &Path) -> io::Result<OwnedFd> {
    let path = c_path(path)?;
    let flags = OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree reads the NUL-terminated path, which lives until the call returns, and
    // returns a new descriptor or -1; nothing else is passed by pointer.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("open_tree returned no descriptor"))?;
    // SAFETY: `fd` was just returned by open_tree and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attach the detached tree `tree` at `target` in the caller's mount namespace.
pub(crate) fn attach(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let target = c_path(target)?;
    let empty = c"";
    // SAFETY: move_mount reads the two NUL-terminated paths, both alive for the call; `tree` is
    // an open descriptor of a detached mount.
    let result = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
