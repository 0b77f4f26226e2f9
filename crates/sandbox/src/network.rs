//! The environment's network namespace: only its own loopback, on which the Runtime API listens
//! at `127.0.0.1:9001` as on Lambda.
//!
//! `__sandbox-init` creates the listening socket inside the new namespace and passes it to the
//! server over the channel the server gave it as standard input (the one the function's spec
//! arrives on later); a socket stays in the namespace
//! it was created in, so the server accepts the runtime's connections on it from outside. The
//! host's loopback services and other environments are unreachable: nothing routes out.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use crate::fd_passing::{receive_with_fds, send_with_fds};

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
    send_with_fds(channel, b"L", &[listener.as_raw_fd()])?;
    Ok(())
}

/// The server's side: wait for the environment's Runtime API listener on `channel`.
pub fn receive_runtime_api_listener(channel: &UnixStream) -> io::Result<TcpListener> {
    let (_, fds) = receive_with_fds(channel.as_raw_fd(), &mut [0u8; 1])?;
    match fds.into_iter().next() {
        Some(fd) => Ok(TcpListener::from(fd)),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the environment ended before passing its Runtime API listener",
        )),
    }
}
