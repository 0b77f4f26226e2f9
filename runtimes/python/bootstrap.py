"""Entry point of Kappa's Python runtime: ``python3 /var/runtime/bootstrap.py``.

Kept tiny because a script run as ``__main__`` is compiled on every start, while the
package it imports can be loaded from cached bytecode.
"""

import os
import sys

if __name__ == "__main__":
    runtime_dir = os.path.dirname(os.path.abspath(__file__))
    if runtime_dir not in sys.path:  # absent under PYTHONSAFEPATH
        sys.path.insert(0, runtime_dir)
    from kappa_python_runtime.main import main

    prestart_fd = os.environ.pop("_KAPPA_PRESTART_FD", None)
    if prestart_fd is not None:  # started ahead of the function: see prestart.py
        from kappa_python_runtime.prestart import wait_for_function

        wait_for_function(int(prestart_fd))
    zygote_fd = os.environ.pop("_KAPPA_ZYGOTE_FD", None)
    if zygote_fd is not None:  # forked into each new environment: see zygote.py
        from kappa_python_runtime.zygote import become_runtime

        become_runtime(int(zygote_fd))
    main()
