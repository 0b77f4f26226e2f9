//! Descriptors passed over the sandbox's channel (a Unix socket) with `SCM_RIGHTS`: the Runtime
//! API listener from the sandbox to the server, the function's detached mounts the other way.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Most descriptors one message carries.
pub const MAX_FDS: usize = 8;

/// Send `bytes` (possibly only a first part of them: the count is returned) with `fds` attached.
pub(crate) fn send_with_fds(channel: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    let rights = [ControlMessage::ScmRights(fds)];
    let control: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    Ok(sendmsg::<()>(
        channel,
        &[IoSlice::new(bytes)],
        control,
        MsgFlags::empty(),
        None,
    )?)
}

/// Receive up to `buf.len()` bytes and the descriptors that came with them (closed on exec).
/// Zero bytes means the other side closed the channel.
pub(crate) fn receive_with_fds(
    channel: RawFd,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut payload = [IoSliceMut::new(buf)];
    let message = recvmsg::<()>(
        channel,
        &mut payload,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = control {
            for fd in received {
                // SAFETY: SCM_RIGHTS installed `fd` in this process for us alone; taking
                // ownership here closes it exactly once.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok((message.bytes, fds))
}
