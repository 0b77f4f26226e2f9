//! The environment's network namespace: only its own loopback, on which the Runtime API listens
//! at `127.0.0.1:9001` as on Lambda.
//!
//! `__sandbox-init` creates the listening socket inside the new namespace and passes it to the
//! server over the channel the server gave it as standard input (the one the function's spec
//! arrives on later); a socket stays in the namespace
//! it was created in, so the server accepts the runtime's connections on it from outside. The
//! host's loopback services and other environments are unreachable: nothing routes out.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socket,
};

/// Where the Runtime API listens inside the namespace (Lambda's address).
pub const RUNTIME_API_ADDRESS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9001);

/// Bring the new namespace's loopback interface up (it starts down).
pub(crate) fn loopback_up() -> io::Result<()> {
    let sock: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is a plain C struct for which all-zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in `request` into it; the
    // pointer is to a live, correctly sized `ifreq` and the socket is open.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) })?;
    // SAFETY: the union member `ifru_flags` is the one SIOCGIFFLAGS just filled.
    unsafe {
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: as above; SIOCSIFFLAGS only reads `request`.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &request) })?;
    Ok(())
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Listen at [`RUNTIME_API_ADDRESS`] and hand the socket to the server over `channel`.
pub(crate) fn send_runtime_api_listener(channel: RawFd) -> io::Result<()> {
    let listener = TcpListener::bind(RUNTIME_API_ADDRESS)?;
    let fds = [listener.as_raw_fd()];
    let message = [ControlMessage::ScmRights(&fds)];
    let payload = [IoSlice::new(b"L")];
    sendmsg::<()>(channel, &payload, &message, MsgFlags::empty(), None)?;
    Ok(())
}

/// The server's side: wait for the environment's Runtime API listener on `channel`.
pub fn receive_runtime_api_listener(channel: &UnixStream) -> io::Result<TcpListener> {
    let mut byte = [0u8; 1];
    let mut payload = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let message = recvmsg::<()>(
        channel.as_raw_fd(),
        &mut payload,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut received = None;
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = control {
            for fd in fds {
                // SAFETY: SCM_RIGHTS installed `fd` in this process for us alone; taking
                // ownership here closes it exactly once.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                received.get_or_insert(owned);
            }
        }
    }
    match received {
        Some(fd) => Ok(TcpListener::from(fd)),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the environment ended before passing its Runtime API listener",
        )),
    }
}
