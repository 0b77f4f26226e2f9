// Client for the Lambda Runtime API (2018-06-01), over node:http with one pooled
// keep-alive socket, as Lambda's Node runtime uses.
//
// The pooled socket is unref'd by the agent while idle, so it never keeps the event loop
// alive on its own: `beforeExit` still fires when the user's work is done, which the
// callback-handler semantics depend on.

import http from 'node:http';
import { toRapidError, xrayCause } from './errors.mjs';

const API = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const XRAY_CAUSE_HEADER = 'Lambda-Runtime-Function-XRay-Error-Cause';
// Above this the X-Ray cause is left out rather than risk an oversized header.
const XRAY_CAUSE_MAX = 64 * 1024;

export const USER_AGENT = `aws-lambda-nodejs/${process.version}-kappa`;

/** Header values must be latin-1 for node:http; JSON text stays valid with \u escapes. */
function headerSafeJson(json) {
  return json.replace(/[^\x20-\x7e]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** JSON text of a handler result; `undefined` is sent as `null`. */
export function serializeResult(result) {
  try {
    return JSON.stringify(result === undefined ? null : result);
  } catch {
    throw new Error('Unable to stringify response body');
  }
}

export class RuntimeApiClient {
  /** @param {string} address `host:port`, the value of AWS_LAMBDA_RUNTIME_API */
  constructor(address) {
    const colon = address.lastIndexOf(':');
    this.hostname = colon > 0 ? address.slice(0, colon) : address;
    this.port = colon > 0 ? parseInt(address.slice(colon + 1), 10) : 80;
    if (this.hostname.startsWith('[') && this.hostname.endsWith(']')) {
      this.hostname = this.hostname.slice(1, -1);
    }
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  /**
   * One request; resolves with {status, headers, body: Buffer} once the reply has been read.
   * A reused keep-alive socket that the server had already closed is retried once.
   */
  request(method, path, headers = {}, body, retried = false) {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          hostname: this.hostname,
          port: this.port,
          method,
          path,
          agent: this.agent,
          headers: { 'User-Agent': USER_AGENT, ...headers },
        },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () =>
            resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
          );
        },
      );
      req.on('error', (err) => {
        if (!retried && req.reusedSocket && err.code === 'ECONNRESET') {
          this.request(method, path, headers, body, true).then(resolve, reject);
        } else {
          reject(err);
        }
      });
      req.end(body);
    });
  }

  postJson(path, text, extraHeaders = {}) {
    return this.request(
      'POST',
      path,
      {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(text),
        ...extraHeaders,
      },
      text,
    );
  }

  /** Long-polls for the next event. Any failure is fatal to the caller, as in Lambda. */
  async nextInvocation() {
    const res = await this.request('GET', `${API}/invocation/next`);
    if (res.status < 200 || res.status > 299) {
      throw new Error(
        `failed to get next invocation: HTTP ${res.status} ${res.body.toString('utf8').slice(0, 500)}`,
      );
    }
    return { body: res.body.toString('utf8'), headers: res.headers };
  }

  /** Posts a handler result; the HTTP status of the reply is ignored, as Lambda's client does. */
  postInvocationResponse(requestId, resultText) {
    return this.postJson(`${API}/invocation/${encodeURIComponent(requestId)}/response`, resultText);
  }

  postInvocationError(requestId, error) {
    const headers = {};
    const cause = xrayCause(error);
    if (cause && cause.length <= XRAY_CAUSE_MAX) headers[XRAY_CAUSE_HEADER] = headerSafeJson(cause);
    return this.postJson(
      `${API}/invocation/${encodeURIComponent(requestId)}/error`,
      JSON.stringify(toRapidError(error)),
      headers,
    );
  }

  postInitError(error) {
    const body = toRapidError(error);
    return this.postJson(`${API}/init/error`, JSON.stringify(body), {
      [ERROR_TYPE_HEADER]: headerSafeJson(String(body.errorType)),
    });
  }

  /** An open chunked POST for a streamed response; see streaming.mjs. */
  openResponseStream(requestId, contentType) {
    return http.request({
      hostname: this.hostname,
      port: this.port,
      method: 'POST',
      path: `${API}/invocation/${encodeURIComponent(requestId)}/response`,
      agent: this.agent,
      headers: {
        'User-Agent': USER_AGENT,
        'Lambda-Runtime-Function-Response-Mode': 'streaming',
        'Transfer-Encoding': 'chunked',
        Trailer: [ERROR_TYPE_HEADER, 'Lambda-Runtime-Function-Error-Body'],
        'Content-Type': contentType,
      },
    });
  }
}
