// Error types raised by the runtime itself, and the two ways an error leaves the process:
// the JSON document posted to the Runtime API and the text written to the function log.
//
// Lambda's Node runtime names its own errors `Runtime.<Kind>`; the name lives on the
// prototype so that `err.name`, the first line of `err.stack` and the `errorType` field all
// carry it. The class name itself (without the prefix) is what JSON logs report as
// `errorType`, because they use `constructor.name`.

import { types } from 'node:util';

function withRuntimePrefix(cls) {
  Object.defineProperty(cls.prototype, 'name', {
    value: `Runtime.${cls.name}`,
    writable: true,
    configurable: true,
    enumerable: false,
  });
  return cls;
}

export const ImportModuleError = withRuntimePrefix(class ImportModuleError extends Error {});
export const HandlerNotFound = withRuntimePrefix(class HandlerNotFound extends Error {});
export const MalformedHandlerName = withRuntimePrefix(class MalformedHandlerName extends Error {});
export const UserCodeSyntaxError = withRuntimePrefix(class UserCodeSyntaxError extends Error {});
export const MalformedStreamingHandler = withRuntimePrefix(
  class MalformedStreamingHandler extends Error {},
);
export const InvalidStreamingOperation = withRuntimePrefix(
  class InvalidStreamingOperation extends Error {},
);

export const NodeJsExit = withRuntimePrefix(
  class NodeJsExit extends Error {
    constructor() {
      super(
        'The Lambda runtime client detected an unexpected Node.js exit code. This is most commonly ' +
          'caused by a Promise that was never settled. For more information, see ' +
          'https://nodejs.org/docs/latest/api/process.html#exit-codes',
      );
    }
  },
);

export const UnhandledPromiseRejection = withRuntimePrefix(
  class UnhandledPromiseRejection extends Error {
    constructor(reason, promise) {
      super(reason === undefined ? undefined : describe(reason));
      this.reason = reason;
      this.promise = promise;
    }
  },
);

/** `String(value)` that cannot throw (symbols, objects with a throwing toString, ...). */
export function describe(value) {
  try {
    return String(value);
  } catch {
    try {
      return Object.prototype.toString.call(value);
    } catch {
      return 'unknown';
    }
  }
}

function looksLikeError(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.name === 'string' &&
    value.name !== '' &&
    typeof value.message === 'string' &&
    value.message !== '' &&
    typeof value.stack === 'string' &&
    value.stack !== ''
  );
}

// DEL cannot travel in the C client Lambda uses; it escapes it, so we do too.
const escapeDel = (s) => (typeof s === 'string' ? s.replaceAll('\x7F', '%7F') : s);

/**
 * The body posted to `/invocation/{id}/error` and `/init/error`:
 * `{errorType, errorMessage, trace}`. Errors report their name, message and stack lines;
 * anything else that was thrown reports its `typeof` and its string form with an empty trace.
 */
export function toRapidError(error) {
  try {
    if (types.isNativeError(error) || looksLikeError(error)) {
      return {
        errorType: escapeDel(error.name),
        errorMessage: escapeDel(error.message),
        trace: escapeDel(error.stack).split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

/** Errors stay as they are; any other thrown value is wrapped the way `new Error(x)` does. */
export function asError(value) {
  if (value instanceof Error) return value;
  return new Error(value === undefined ? undefined : describe(value));
}

// Error fields are non-enumerable, so a plain JSON.stringify would print `{}`. The text log
// shows them as errorType/errorMessage/code plus the stack split into lines, followed by
// any enumerable fields the user attached.
function errorFieldsForTextLog(_key, value) {
  if (value instanceof Error) {
    const shown = { errorType: value.name, errorMessage: value.message, code: value.code };
    Object.assign(shown, value);
    if (typeof value.stack === 'string') shown.stack = value.stack.split('\n');
    return shown;
  }
  return value;
}

/** The text-log rendering of an error: a tab, then one line of JSON. */
export function formatErrorForTextLog(error) {
  try {
    return '\t' + JSON.stringify(error, errorFieldsForTextLog);
  } catch {
    return '\t' + JSON.stringify(toRapidError(error));
  }
}

// The JSON-log rendering of an error inside a `message` field.
export function errorFieldsForJsonLog(_key, value) {
  if (value instanceof Error) {
    const shown = {
      errorType: value?.constructor?.name ?? 'UnknownError',
      errorMessage: value.message,
      stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
    };
    return Object.assign(shown, value);
  }
  return value;
}

/**
 * The X-Ray error cause Lambda sends alongside an invoke error, in header
 * `Lambda-Runtime-Function-XRay-Error-Cause`. Stack frames become {path, line, label}.
 */
export function xrayCause(error) {
  try {
    const frames = [];
    if (error && typeof error.stack === 'string') {
      for (const raw of escapeDel(error.stack).split('\n').slice(1)) {
        let line = raw.trim().replace(/[()]/g, '');
        line = line.substring(line.indexOf(' ') + 1);
        const cut = line.lastIndexOf(' ');
        const label = cut >= 0 ? line.slice(0, cut) : '';
        const location = (label ? line.slice(cut + 1) : line).split(':');
        frames.push({ path: location[0], line: parseInt(location[1], 10), label: label || 'anonymous' });
      }
    }
    return JSON.stringify({
      working_directory: process.cwd(),
      exceptions: [
        { type: escapeDel(error?.name), message: escapeDel(error?.message), stack: frames },
      ],
      paths: [...new Set(frames.map((f) => f.path))],
    });
  } catch {
    return '';
  }
}
