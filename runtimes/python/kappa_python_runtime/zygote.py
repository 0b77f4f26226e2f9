"""A zygote: this runtime, imported once, forked into each new environment.

Kappa starts the interpreter with ``_KAPPA_ZYGOTE_FD`` naming a Unix socket to the server, as
root, in a mount namespace of its own that shows the runtime at ``/var/runtime`` (and a
relocated interpreter at ``/var/lang``) as sandboxes do, with only the variables every function
of the runtime gets. By the time ``serve`` runs, ``main`` and everything it needs are imported.

The server's first message is the confinement every forked runtime gets (seccomp programs as
the kernel takes them, the sandbox user). Each later message asks for one runtime, with three
descriptors: a pidfd of the new sandbox's waiting process (its pid 2, which has attached the
function), the write end of a pipe for
its runtime's pid (4 bytes, little-endian), and the function's log. For each, this process
forks a child that joins the sandbox's namespaces and process group and forks again: pid 3 of
the sandbox's PID namespace (pid 2 is the sandbox's own process that handed over), which forks
the runtime's process (pid 4), writes its pid to the pipe and ends. The runtime, orphaned inside the namespace, becomes the child of the sandbox's
init (a process that enters a PID namespace with ``setns`` is not its init's child; its
children are). The first child then reports ``ok`` (or why not) to the zygote, which answers
the server.

The runtime's process takes the log as stdout and stderr, closes every other descriptor, sets
the open-files limit, empties its capability sets, becomes the sandbox user, installs the
seccomp filter and adopts the function's command line, environment and directory as a
prestarted runtime does (``prestart.adopt``). The server's side is
``crates/sandbox/src/zygote.rs``.
"""

import ctypes
import json
import os
import resource
import signal
import socket
import struct

from . import prestart

_libc = ctypes.CDLL(None, use_errno=True)

_PR_SET_DUMPABLE = 4
_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SECCOMP_MODE_FILTER = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_MAX_MESSAGE = 1 << 24


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def _prctl(option, arg2=0, arg3=0, what="prctl"):
    _check(
        _libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg2),
            ctypes.c_ulong(arg3),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        what,
    )


def _receive(channel, with_fds):
    """One length-prefixed JSON message (and the descriptors sent with its first bytes). Reads
    exactly the message: the next one may already be waiting behind it."""
    if with_fds:
        header, fds, _, _ = socket.recv_fds(channel, 4, 8)
    else:
        header, fds = channel.recv(4), []
    if not header:
        raise EOFError
    header += _read_exactly(channel, 4 - len(header))
    (length,) = struct.unpack(">I", header)
    if length > _MAX_MESSAGE:
        raise ValueError("message too long")
    return json.loads(_read_exactly(channel, length)), fds


def _read_exactly(channel, count):
    data = b""
    while len(data) < count:
        more = channel.recv(count - len(data))
        if not more:
            raise EOFError
        data += more
    return data


def _answer(channel, error):
    body = json.dumps({"error": error}).encode()
    channel.sendall(struct.pack(">I", len(body)) + body)


def serve(fd):
    """Serve the server's requests; returns only in a forked runtime's process, adopted."""
    channel = socket.socket(fileno=fd)
    settings, _ = _receive(channel, False)
    programs = [bytes.fromhex(program) for program in settings["seccomp_programs"]]
    user = (settings["uid"], settings["gid"])
    # Children are reaped by the kernel; each reports on its own pipe.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            request, fds = _receive(channel, True)
        except (EOFError, ConnectionError):
            os._exit(0)
        if len(fds) != 3:
            for received in fds:
                os.close(received)
            _answer(channel, "expected 3 descriptors, got %d" % len(fds))
            continue
        status_read, status_write = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(status_read)
            channel.close()
            release = _keep(request, fds, status_write, user, programs)
            return release  # in the runtime's process
        os.close(status_write)
        for received in fds:
            os.close(received)
        try:
            status = os.read(status_read, 4096)
        finally:
            os.close(status_read)
        _answer(channel, None if status == b"ok" else (status.decode(errors="replace") or
                                                        "the zygote's child ended"))


def _keep(request, fds, status_write, user, programs):
    """In the zygote's child: enter the sandbox and start its runtime; report to the zygote."""
    pidfd, pid_pipe, log = fds
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        procs = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in request["cgroup_procs"]]
        _check(_libc.setns(pidfd, request["namespaces"]), "joining the sandbox's namespaces")
        os.close(pidfd)
        os.setpgid(0, request["process_group"])
        inside = os.fork()  # pid 3 of the sandbox's PID namespace
        if inside == 0:
            runtime = os.fork()
            if runtime == 0:
                return _runtime(request, procs, log, pid_pipe, status_write, user, programs)
            os.write(pid_pipe, struct.pack("<i", runtime))
            os._exit(0)
        _, status = os.waitpid(inside, 0)
        if status != 0:
            raise RuntimeError("the process forking the runtime ended with status %d" % status)
        os.write(status_write, b"ok")
        os._exit(0)
    except BaseException as err:  # noqa: B036 - anything is a failure to report
        os.write(status_write, ("%s: %s" % (type(err).__name__, err)).encode()[:4000])
        os._exit(1)


def _runtime(request, procs, log, pid_pipe, status_write, user, programs):
    """The runtime's process (pid 4 of the sandbox, orphaned to its init): confine it and return
    the function's release to adopt."""
    try:
        os.close(pid_pipe)
        os.close(status_write)
        _confine(request, procs, log, user, programs)
    except BaseException as err:  # noqa: B036
        os.write(2, ("kappa: starting the runtime failed: %s\n" % err).encode())
        os._exit(127)
    release = request["release"]
    return release["argv"], dict(release["env"]), release["cwd"]


def _confine(request, procs, log, user, programs):
    """In the runtime's process, pid 4 of the sandbox: what an exec from the sandbox's init
    would have given it."""
    for fd in procs:
        os.write(fd, b"0")
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, 1 << 30)
    limit = request["open_files_limit"]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    for capability in range(last_cap + 1):
        _prctl(_PR_CAPBSET_DROP, capability, what="dropping a capability")
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, what="clearing ambient capabilities")
    uid, gid = user
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # clears the permitted and effective sets
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "clearing inheritable capabilities")
    # Changing credentials made the process undumpable, which hands /proc/self to root; an
    # exec would have reset it.
    _prctl(_PR_SET_DUMPABLE, 1, what="making the process dumpable")
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, what="setting no_new_privs")
    for program in programs:
        instructions = ctypes.create_string_buffer(program, len(program))
        fprog = _SockFprog(len(program) // 8, ctypes.addressof(instructions))
        _prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog),
               what="installing the seccomp filter")


def become_runtime(fd):
    """Serve as the zygote; in each forked runtime, adopt its function and return."""
    argv, env, cwd = serve(fd)
    prestart.adopt(argv, env, cwd)
