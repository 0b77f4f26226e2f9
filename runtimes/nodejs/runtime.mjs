// The invoke loop: fetch an event, call the handler, report its result, repeat.
//
// Each iteration is scheduled with setImmediate rather than awaited in a loop, because a
// callback handler's result is only reported once the event loop is empty
// (context.callbackWaitsForEmptyEventLoop, default true). That moment is observed with
// process 'beforeExit'; whatever should happen then is kept in `onEmptyEventLoop`.
//
// A handler completes in exactly one of these ways (the first one wins):
//   - its returned promise settles (async handlers; sent at once, no wait);
//   - callback(err, result) (sent when the loop is empty, or at once if
//     callbackWaitsForEmptyEventLoop is false; errors are always sent at once);
//   - context.done / succeed / fail (sent at once);
//   - the event loop empties first: an `async function` handler fails with
//     Runtime.NodeJsExit, any other handler succeeds with `null`.

import { logError, setRequestId, setTenantId } from './logging.mjs';
import { NodeJsExit } from './errors.mjs';
import { serializeResult } from './rapid.mjs';
import { ResponseStream, defaultContentType, streamingMode } from './streaming.mjs';

let onEmptyEventLoop = () => {};

export function installEmptyEventLoopHook() {
  process.on('beforeExit', () => onEmptyEventLoop());
}

const resetEmptyEventLoop = () => {
  onEmptyEventLoop = () => {};
};

const isPromise = (v) => v !== null && v !== undefined && typeof v.then === 'function';

function isAsyncFunction(fn) {
  try {
    return fn?.constructor?.name === 'AsyncFunction';
  } catch {
    return false;
  }
}

function parseJsonHeader(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

/** The request-specific part of an invocation, read from the /next headers. */
class Invocation {
  constructor(headers) {
    this.headers = headers; // node:http lowercases header names
    const id = headers['lambda-runtime-aws-request-id'];
    if (!id) throw new Error('invocation id is missing or invalid');
    this.requestId = id;
    this.tenantId = headers['lambda-runtime-aws-tenant-id'];
  }

  enterLoggingContext() {
    setRequestId(this.requestId);
    setTenantId(this.tenantId);
  }

  forwardTraceId() {
    const trace = this.headers['lambda-runtime-trace-id'];
    if (trace) process.env._X_AMZN_TRACE_ID = trace;
    else delete process.env._X_AMZN_TRACE_ID;
  }

  /** Adds the documented context fields to `context`; throws on unparseable JSON headers. */
  describeInto(context) {
    const h = this.headers;
    const env = process.env;
    const deadline = Number(h['lambda-runtime-deadline-ms'] ?? 0) || 0;
    return Object.assign(context, {
      functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
      functionName: env.AWS_LAMBDA_FUNCTION_NAME,
      memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
      clientContext: parseJsonHeader(h['lambda-runtime-client-context'], 'ClientContext'),
      identity: parseJsonHeader(h['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
      invokedFunctionArn: h['lambda-runtime-invoked-function-arn'],
      awsRequestId: this.requestId,
      tenantId: this.tenantId,
      getRemainingTimeInMillis: () => deadline - Date.now(),
    });
  }
}

export class Runtime {
  /**
   * @param {import('./rapid.mjs').RuntimeApiClient} client
   * @param {Function} handler
   * @param {(err: unknown) => void} onFatal  reports a runtime failure and exits
   */
  constructor(client, handler, onFatal) {
    this.client = client;
    this.handler = handler;
    this.onFatal = onFatal;
    this.isAsync = isAsyncFunction(handler);
    const mode = streamingMode(handler);
    this.streaming = mode.streaming;
    this.highWaterMark = mode.highWaterMark;
    /** Request id that uncaught errors are reported against; undefined during init. */
    this.currentRequestId = undefined;
  }

  scheduleNext() {
    setImmediate(() => {
      const once = this.streaming ? this.invokeStreaming() : this.invokeBuffered();
      once.catch((err) => {
        console.log(`Unexpected Top Level Error: ${err}`);
        this.onFatal(err);
      });
    });
  }

  // Posts, then starts the next iteration. Failing to reach the Runtime API ends the
  // process, as in every Lambda runtime.
  postThenNext(promise) {
    promise.then(
      () => this.scheduleNext(),
      (err) => this.onFatal(err),
    );
  }

  async invokeBuffered() {
    const { body, headers } = await this.client.nextInvocation();
    const invocation = new Invocation(headers);
    invocation.enterLoggingContext();
    const id = invocation.requestId;
    this.currentRequestId = id;

    let finished = false; // first of callback/done/succeed/fail wins
    let reported = false; // a response was sent (or given up on)
    let waitForEmptyEventLoop = true;

    const reportError = (err) => {
      logError('Invoke Error', err);
      this.postThenNext(this.client.postInvocationError(id, err));
    };

    const reportResult = (result) => {
      if (reported) {
        console.error(
          'Invocation has already been reported as done. Cannot call complete more than once per invocation.',
        );
        return;
      }
      reported = true;
      let text;
      try {
        text = serializeResult(result);
      } catch (err) {
        reportError(err);
        return;
      }
      this.postThenNext(this.client.postInvocationResponse(id, text));
    };

    const once =
      (fn) =>
      (...args) => {
        if (finished) return;
        finished = true;
        fn(...args);
      };

    const done = (err, result) => {
      resetEmptyEventLoop();
      if (err !== undefined && err !== null) reportError(err);
      else reportResult(result);
    };

    const callback = once((err, result) => {
      resetEmptyEventLoop();
      if (err !== undefined && err !== null) reportError(err);
      else if (!waitForEmptyEventLoop) reportResult(result);
      else onEmptyEventLoop = () => setImmediate(() => reportResult(result));
    });

    const context = {
      get callbackWaitsForEmptyEventLoop() {
        return waitForEmptyEventLoop;
      },
      set callbackWaitsForEmptyEventLoop(value) {
        waitForEmptyEventLoop = value;
      },
      done: once(done),
      succeed: once((result) => done(null, result)),
      fail: once((err) => done(err === undefined || err === null ? 'handled' : err, null)),
    };

    // Nothing reported by the time the loop empties.
    onEmptyEventLoop = () => {
      reported = true;
      if (this.isAsync) {
        const err = new NodeJsExit();
        logError('Invoke Error', err);
        this.postThenNext(this.client.postInvocationError(id, err));
      } else {
        this.postThenNext(this.client.postInvocationResponse(id, 'null'));
      }
    };

    try {
      const event = JSON.parse(body);
      invocation.forwardTraceId();
      const result = this.handler(event, invocation.describeInto(context), callback);
      if (isPromise(result)) {
        result.then(context.succeed, context.fail).catch(context.fail);
      }
    } catch (err) {
      callback(err);
    }
  }

  async invokeStreaming() {
    const { body, headers } = await this.client.nextInvocation();
    const invocation = new Invocation(headers);
    invocation.enterLoggingContext();
    const id = invocation.requestId;
    this.currentRequestId = id;

    let waitForEmptyEventLoop = true;
    const context = {
      get callbackWaitsForEmptyEventLoop() {
        return waitForEmptyEventLoop;
      },
      set callbackWaitsForEmptyEventLoop(value) {
        waitForEmptyEventLoop = value;
      },
    };

    const stream = new ResponseStream(
      this.client.openResponseStream(id, defaultContentType()),
      { highWaterMark: this.highWaterMark },
    );

    const next = () => {
      resetEmptyEventLoop();
      if (!waitForEmptyEventLoop) this.scheduleNext();
      else onEmptyEventLoop = () => setImmediate(() => this.scheduleNext());
    };
    const fail = async (err) => {
      logError('Invoke Error', err);
      try {
        await stream.fail(err);
      } catch {
        // The request was aborted (e.g. the handler destroyed the stream), so RAPID sees
        // a truncated response. If the Runtime API itself is gone, the next /next says so.
      }
      next();
    };

    // The handler never settled and the loop emptied: move on, as Lambda does.
    onEmptyEventLoop = () => this.scheduleNext();

    try {
      const event = JSON.parse(body);
      invocation.forwardTraceId();
      const pending = this.handler(event, stream, invocation.describeInto(context));
      if (!isPromise(pending)) {
        await fail('Streaming does not support non-async handlers.');
        return;
      }
      const result = await pending;
      if (result !== undefined) console.warn('Streaming handlers ignore return values.');
      if (!stream.writableEnded) {
        await fail('Response stream is not finished.');
        return;
      }
      await stream.responseDone;
      next();
    } catch (err) {
      await fail(err);
    }
  }
}
