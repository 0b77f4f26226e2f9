"""The context object handed to the handler, with the attributes and reprs Lambda's
Python runtime gives it."""

import json
import os
import time

from . import logs
from .errors import Fault

CLIENT_FIELDS = ("installation_id", "app_title", "app_version_name", "app_version_code",
                 "app_package_name")


class CognitoIdentity:
    def __init__(self, cognito_identity_id=None, cognito_identity_pool_id=None):
        self.cognito_identity_id = cognito_identity_id
        self.cognito_identity_pool_id = cognito_identity_pool_id

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id, self.cognito_identity_pool_id)


class Client:
    def __init__(self, installation_id=None, app_title=None, app_version_name=None,
                 app_version_code=None, app_package_name=None):
        self.installation_id = installation_id
        self.app_title = app_title
        self.app_version_name = app_version_name
        self.app_version_code = app_version_code
        self.app_package_name = app_package_name

    def __repr__(self):
        return ("Client([installation_id=%s,app_title=%s,app_version_name=%s,"
                "app_version_code=%s,app_package_name=%s])" % (
                    self.installation_id, self.app_title, self.app_version_name,
                    self.app_version_code, self.app_package_name))


class ClientContext:
    def __init__(self, custom=None, env=None, client=None):
        self.custom = custom
        self.env = env
        self.client = client

    def __repr__(self):
        return "ClientContext([custom=%s,env=%s,client=%s])" % (self.custom, self.env, self.client)


def parse_client_context(text):
    """The Lambda-Runtime-Client-Context header as a ClientContext."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise Fault("Runtime.LambdaContextUnmarshalError",
                    "Unable to parse Client Context JSON: %s" % err) from None
    if not isinstance(doc, dict):
        return ClientContext()
    client = doc.get("client")
    if isinstance(client, dict):
        client = Client(*(client.get(name) for name in CLIENT_FIELDS))
    else:
        client = None
    return ClientContext(doc.get("custom"), doc.get("env"), client)


def parse_cognito_identity(text):
    """The Lambda-Runtime-Cognito-Identity header as a CognitoIdentity."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise Fault("Runtime.LambdaContextUnmarshalError",
                    "Unable to parse Cognito Identity JSON: %s" % err) from None
    if not isinstance(doc, dict):
        return CognitoIdentity()
    return CognitoIdentity(doc.get("cognitoIdentityId"), doc.get("cognitoIdentityPoolId"))


_FUNCTION_NAME = _FUNCTION_VERSION = _MEMORY_SIZE = _LOG_GROUP = _LOG_STREAM = None


def read_function_environment():
    """Read the function's fields of every context from the environment, once, at init (not at
    import: a prestarted runtime is imported before its function's variables exist)."""
    global _FUNCTION_NAME, _FUNCTION_VERSION, _MEMORY_SIZE, _LOG_GROUP, _LOG_STREAM
    _FUNCTION_NAME = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    _FUNCTION_VERSION = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
    # A string, as in Lambda's Python runtime: it is the environment variable's value.
    _MEMORY_SIZE = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    _LOG_GROUP = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
    _LOG_STREAM = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")


class LambdaContext:
    """The handler's second argument."""

    def __init__(self, aws_request_id, deadline_ms, invoked_function_arn, client_context,
                 identity, tenant_id):
        self.aws_request_id = aws_request_id
        self.log_group_name = _LOG_GROUP
        self.log_stream_name = _LOG_STREAM
        self.function_name = _FUNCTION_NAME
        self.memory_limit_in_mb = _MEMORY_SIZE
        self.function_version = _FUNCTION_VERSION
        self.invoked_function_arn = invoked_function_arn
        self.client_context = client_context
        self.identity = identity
        self.tenant_id = tenant_id
        self._epoch_deadline_time_in_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._epoch_deadline_time_in_ms - int(time.time() * 1000), 0)

    def log(self, msg):
        logs.sink.write_raw(str(msg))

    def __repr__(self):
        return ("LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
                "function_name=%s,memory_limit_in_mb=%s,function_version=%s,"
                "invoked_function_arn=%s,client_context=%s,identity=%s,tenant_id=%s])" % (
                    self.aws_request_id, self.log_group_name, self.log_stream_name,
                    self.function_name, self.memory_limit_in_mb, self.function_version,
                    self.invoked_function_arn, self.client_context, self.identity,
                    self.tenant_id))
