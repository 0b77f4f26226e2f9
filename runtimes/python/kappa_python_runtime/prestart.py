"""Started ahead of the function: wait for it, then become its runtime.

Kappa may start this runtime while the environment waits in its pool, before the function is
known: with ``_KAPPA_PRESTART_FD`` naming a pipe and only the variables every function gets.
By then ``main`` and everything it imports are loaded. When the function's code is in place,
Kappa writes to the pipe, as JSON up to end of file, the runtime's real command line,
environment and working directory. The runtime adopts them and goes on as if it had just
been started with them. If a variable read when the interpreter starts differs (``PYTHON*``,
the C library's and the dynamic loader's), the interpreter could not honour it after the fact:
the runtime then executes itself again with the function's environment instead. (Kappa does
not prestart a runtime for a function that sets one of them: the list below is the server's
too. The check here also covers the command line.)
"""

import json
import os
import sys
import time

# Read by CPython, the dynamic loader or the C library as the process starts (as in Kappa's
# crates/runtime/src/launch.rs).
_START_PREFIXES = ("PYTHON", "LD_", "LC_", "MALLOC_")
_START_NAMES = frozenset({"LANG", "HOME", "GLIBC_TUNABLES"})


def read_at_start(name):
    """Whether changing ``name`` after the interpreter started would come too late."""
    return name.startswith(_START_PREFIXES) or name in _START_NAMES


def start_variables(env):
    return {name: value for name, value in env.items() if read_at_start(name)}


def read_release(fd):
    """The function's command line, environment and directory, once Kappa sends them."""
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    release = json.loads(b"".join(chunks))
    return release["argv"], dict(release["env"]), release["cwd"]


def environment_at_exec():
    """The environment this process was executed with. Not ``os.environ``: the interpreter
    adds to that as it starts (``LC_CTYPE`` when it coerces the C locale), and would add the
    same for the function's environment."""
    try:
        with open("/proc/self/environ", "rb") as f:
            block = f.read()
    except OSError:
        return dict(os.environ)
    pairs = (item.split(b"=", 1) for item in block.split(b"\0") if b"=" in item)
    return {os.fsdecode(name): os.fsdecode(value) for name, value in pairs}


def needs_restart(argv, env, at_exec):
    """Whether the function's start differs in what only a new interpreter can take."""
    started_with = getattr(sys, "orig_argv", None)  # Python 3.10+
    if started_with is not None and list(started_with) != argv:
        return True
    return start_variables(at_exec) != start_variables(env)


def wait_for_function(fd):
    """Block until the function arrives; return adopted, or never (executed again)."""
    adopt(*read_release(fd))


def adopt(argv, env, cwd):
    """Go on as if started with ``argv`` in ``env`` and ``cwd``; or never return, executed
    again with them, when only a new interpreter could honour them."""
    os.chdir(cwd)
    at_exec = environment_at_exec()
    if needs_restart(argv, env, at_exec):
        os.execve(argv[0], argv, env)
    # What the interpreter set as it started (LC_CTYPE, coercing the C locale) it would have set
    # for the function's environment too: the start-up variables are the same.
    added = {name: value for name, value in os.environ.items() if name not in at_exec}
    os.environ.clear()
    os.environ.update(env)
    for name, value in added.items():
        os.environ.setdefault(name, value)
    time.tzset()
