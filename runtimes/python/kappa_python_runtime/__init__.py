"""Kappa's runtime client for the managed ``python3.x`` runtimes.

``bootstrap.py`` (run as ``python3 /var/runtime/bootstrap.py``) imports ``main`` from here.
The package imports the handler named by ``_HANDLER`` once, then loops on the Runtime API
(2018-06-01): fetch the next event, call the handler, post the result or the error. What a
function can observe (error documents, log lines, the context object, ``sys.path``) follows
Lambda's own Python runtime, so a function written for Lambda cannot tell the difference in
ordinary use. Standard library only; Python 3.9 to 3.13.

Modules:
    runtime_api  the HTTP client for the Runtime API (one persistent connection)
    marshalling  events in (strict JSON), results out (Lambda's JSON rules)
    context      the context object handed to the handler
    logs         stdout/telemetry-fd log sinks, the root logger's handler and formats
    errors       error documents, stack traces, the logged form of an error
    main         init (sys.path, handler import) and the invoke loop
"""
