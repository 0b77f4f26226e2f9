// Response streaming: `awslambda.streamifyResponse(handler)` handlers receive a writable
// stream whose bytes go to the Runtime API as one chunked POST
// (`Lambda-Runtime-Function-Response-Mode: streaming`). A failure after the stream was
// opened is reported in the HTTP trailers `Lambda-Runtime-Function-Error-Type` and
// `Lambda-Runtime-Function-Error-Body` (base64 of the JSON error).
//
// `awslambda.HttpResponseStream.from(stream, prelude)` switches the content type to
// Lambda's HTTP-integration framing: the JSON prelude, eight NUL bytes, then the body.

import { Writable } from 'node:stream';
import { InvalidStreamingOperation, MalformedStreamingHandler, toRapidError } from './errors.mjs';

const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HIGH_WATER_MARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const RESPONSE_MODE = 'response';
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
const HTTP_INTEGRATION_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';

export function streamifyResponse(handler, options) {
  handler[STREAMING] = RESPONSE_MODE;
  if (typeof options?.highWaterMark === 'number') {
    handler[HIGH_WATER_MARK] = parseInt(options.highWaterMark, 10);
  }
  return handler;
}

/** `{streaming, highWaterMark}` for a loaded handler function. */
export function streamingMode(handler) {
  const mode = handler[STREAMING];
  if (mode === undefined || mode === null || mode === false) return { streaming: false };
  if (mode !== RESPONSE_MODE) {
    throw new MalformedStreamingHandler('Only response streaming is supported.');
  }
  const hwm = parseInt(handler[HIGH_WATER_MARK], 10);
  return { streaming: true, highWaterMark: Number.isNaN(hwm) ? undefined : hwm };
}

export class HttpResponseStream {
  static from(stream, prelude) {
    stream.setContentType(HTTP_INTEGRATION_CONTENT_TYPE);
    const text = JSON.stringify(prelude);
    stream._onBeforeFirstWrite = (write) => {
      write(text);
      write(new Uint8Array(8));
    };
    return stream;
  }
}

/** Installs the `awslambda` global unless AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA is set. */
export function installAwsLambdaGlobal(env = process.env) {
  const off = env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA;
  if (off === '1' || off === 'true') return;
  globalThis.awslambda = { streamifyResponse, HttpResponseStream };
}

/**
 * The stream handed to a streaming handler. Writes go to the open HTTP request; the first
 * write (or the end, if nothing was written) sends the headers and any prelude.
 */
export class ResponseStream extends Writable {
  constructor(request, { highWaterMark } = {}) {
    super(highWaterMark === undefined ? {} : { highWaterMark });
    this._request = request;
    this._opened = false;
    this._failure = undefined;
    this._onBeforeFirstWrite = undefined;
    this.responseDone = new Promise((resolve, reject) => {
      request.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
        res.on('error', reject);
      });
      request.on('error', reject);
    });
    // Nobody may be waiting yet; a transport error is surfaced by whoever awaits.
    this.responseDone.catch(() => {});
    // A stream the handler destroys reports its error here; the runtime learns of the
    // failure through responseDone, so an unobserved 'error' must not crash the process.
    this.on('error', () => {});
  }

  setContentType(contentType) {
    if (this._opened) throw new InvalidStreamingOperation('Cannot set content-type, too late.');
    this._request.setHeader('Content-Type', contentType);
  }

  write(chunk, encoding, callback) {
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
      chunk = JSON.stringify(chunk);
    }
    return super.write(chunk, encoding, callback);
  }

  _open() {
    if (this._opened) return;
    this._opened = true;
    if (typeof this._onBeforeFirstWrite === 'function') {
      this._onBeforeFirstWrite((c) => this._request.write(c));
    }
  }

  _write(chunk, _encoding, callback) {
    this._open();
    this._request.write(chunk, callback);
  }

  _final(callback) {
    this._open();
    if (this._failure) {
      const error = this._failure;
      this._request.addTrailers({
        'Lambda-Runtime-Function-Error-Type': String(error.errorType),
        'Lambda-Runtime-Function-Error-Body': Buffer.from(JSON.stringify(error)).toString('base64'),
      });
    }
    this._request.end(() => callback());
  }

  _destroy(err, callback) {
    if (!this.writableFinished) this._request.destroy(err ?? undefined);
    callback(err);
  }

  /** Ends the response with the error in the trailers; resolves when RAPID has replied. */
  async fail(error) {
    if (!this.writableEnded && !this.destroyed) {
      this._failure = toRapidError(error);
      this.end();
    }
    await this.responseDone;
  }
}

export function defaultContentType() {
  return DEFAULT_CONTENT_TYPE;
}
