"""Init (exec wrapper, sys.path, handler import) and the invoke loop."""

import importlib
import json
import logging
import os
import site
import sys

from . import errors, logs
from .context import (CognitoIdentity, LambdaContext, parse_client_context,
                      parse_cognito_identity, read_function_environment)
from .errors import Fault
from .marshalling import ResultEncoder, decode_event, writes_ascii_only
from .runtime_api import RuntimeApiClient, RuntimeApiError

# Logged (through the root logger) before an init failure is reported, as Lambda does.
INIT_FAILURE_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function "
    "code. However, in rare cases, a Lambda runtime update can cause unexpected function "
    "behavior. For functions using managed runtimes, runtime updates can be triggered by a "
    "function change, or can be applied automatically. To determine if the runtime has been "
    "updated, check the runtime version in the INIT_START log entry. If this error correlates "
    "with a change in the runtime version, you may be able to mitigate this error by "
    "temporarily rolling back to the previous runtime version. For more information, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html\r"
)
_WRAPPED_MARKER = "_KAPPA_EXEC_WRAPPER_APPLIED"


def setup_sys_path(task_root):
    """Lambda's module search order: task root, layer paths, runtime dir, then the rest."""
    # Layers are at /opt; Kappa's unisolated mode (no mount namespace) says where they are.
    opt = os.environ.get("_KAPPA_OPT_DIR") or "/opt"
    layer_site = "%s/python/lib/python%d.%d/site-packages" % ((opt,) + sys.version_info[:2])
    layer_root = opt + "/python"
    # Added as site dirs first, so .pth files in layers work; that appends them at the end.
    site.addsitedir(layer_site)
    site.addsitedir(layer_root)
    if sys.path and os.path.abspath(sys.path[0] or ".") == errors.RUNTIME_DIR:
        del sys.path[0]
    sys.path[0:0] = [task_root, layer_site, layer_root, errors.RUNTIME_DIR]


def load_handler(spec):
    """Import the handler's module and return the handler.

    Raises Fault for what Lambda reports as Runtime.* errors, and lets any other exception
    raised while importing the function's module through.
    """
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as err:
        raise Fault("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (spec, err)) from None
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise Fault("Runtime.BuiltInModuleConflict",
                    "Cannot use built-in module %s as a handler module" % module_name)
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as err:
        raise Fault("Runtime.ImportModuleError",
                    "Unable to import module '%s': %s" % (module_name, err)) from None
    except SyntaxError as err:
        trace = ['  File "%s" Line %s\n    %s' % (err.filename, err.lineno, err.text)]
        raise Fault("Runtime.UserCodeSyntaxError",
                    "Syntax error in module '%s': %s" % (module_name, err), trace) from None
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise Fault("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'"
                    % (function_name, module_name)) from None


class InvokeLoop:
    """Fetches events, calls the handler, posts results and errors, forever."""

    def __init__(self, client, handler, is_json):
        self.client = client
        self.handler = handler
        self.is_json = is_json
        self.encoder = ResultEncoder(ensure_ascii=writes_ascii_only())

    def run_forever(self):
        while True:
            self.handle_one()

    def handle_one(self):
        response = self.client.next_invocation()
        header = response.headers.get  # lower-cased names
        request_id = header("lambda-runtime-aws-request-id")
        logs.current_request_id = request_id
        trace_id = header("lambda-runtime-trace-id")
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)

        try:
            payload, content_type = self.invoke(request_id, header, response.body)
        except Fault as fault:
            document, cause = errors.from_fault(fault, request_id)
        except Exception as exc:
            document, cause = errors.from_exception(exc, request_id)
        else:
            self.client.post_response(request_id, payload, content_type)
            return
        logs.log_error(document, self.is_json)
        self.client.post_error(request_id, self.encode_error(document),
                               errors.xray_cause_header(cause))

    def invoke(self, request_id, header, body):
        """Call the handler; returns (payload bytes, content type)."""
        client_context = header("lambda-runtime-client-context")
        identity = header("lambda-runtime-cognito-identity")
        deadline = header("lambda-runtime-deadline-ms")
        context = LambdaContext(
            request_id,
            int(deadline) if deadline and deadline.isdigit() else 0,
            header("lambda-runtime-invoked-function-arn") or "",
            parse_client_context(client_context) if client_context else None,
            parse_cognito_identity(identity) if identity else CognitoIdentity(),
            header("lambda-runtime-aws-tenant-id"),
        )
        content_type = header("content-type")
        # Like Lambda, hand over anything not declared exactly as JSON as raw bytes.
        if content_type is None or content_type == "application/json":
            event = decode_event(body)
        else:
            event = body
        result = self.handler(event, context)
        if isinstance(result, bytes):
            return result, "application/unknown"
        try:
            return self.encoder.encode(result).encode("utf-8"), "application/json"
        except Exception as err:
            raise Fault("Runtime.MarshalError", "Unable to marshal response: %s" % err) from None

    def encode_error(self, document):
        try:
            return self.encoder.encode(document).encode("utf-8")
        except Exception:
            return json.dumps(document, default=str).encode("utf-8")


def _exec_wrapper_if_configured():
    """Honour AWS_LAMBDA_EXEC_WRAPPER: run this runtime again through the wrapper, once."""
    if os.environ.pop(_WRAPPED_MARKER, None):
        return
    wrapper = os.environ.get("AWS_LAMBDA_EXEC_WRAPPER")
    if not wrapper:
        return
    if not os.path.isfile(wrapper):
        sys.stdout.write("%s: does not exist\n" % wrapper)
        sys.exit(127)
    if not os.access(wrapper, os.X_OK):
        sys.stdout.write("%s: is not an executable\n" % wrapper)
        sys.exit(126)
    sys.stdout.flush()
    os.environ[_WRAPPED_MARKER] = "1"
    bootstrap = os.path.join(errors.RUNTIME_DIR, "bootstrap.py")
    os.execv(wrapper, [wrapper, sys.executable, bootstrap] + sys.argv[1:])


def main():
    _exec_wrapper_if_configured()
    logs.make_unbuffered("stdout", 1)
    logs.make_unbuffered("stderr", 2)
    is_json = logs.setup()
    read_function_environment()
    client = RuntimeApiClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    setup_sys_path(os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd())
    handler_spec = os.environ.get("_HANDLER") or (sys.argv[1] if len(sys.argv) > 1 else "")

    try:
        try:
            handler = load_handler(handler_spec)
        except Fault as fault:
            document = errors.error_document(fault.error_type, fault.message,
                                             fault.stack_trace, "")
        except Exception as exc:
            document, _ = errors.from_exception(exc, "")
        else:
            InvokeLoop(client, handler, is_json).run_forever()
        logging.getLogger().warning(INIT_FAILURE_WARNING)
        logs.log_error(document, is_json)
        client.post_init_error(json.dumps(document).encode("utf-8"), document["errorType"])
        sys.exit(1)
    except RuntimeApiError as err:
        sys.stderr.write("[ERROR] LAMBDA_RUNTIME %s\n" % err)
        sys.exit(1)
