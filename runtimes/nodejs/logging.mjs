// Replaces the global console with Lambda's log format.
//
// Text (default):  <ISO time>\t<request id>\t<LEVEL>\t<util.format(args)>
// JSON (AWS_LAMBDA_LOG_FORMAT=JSON): {"timestamp","level","requestId",["tenantId"],"message",...}
//
// On stdout every record is one line: newlines inside a record become \r, because the
// platform ends a log event at each \n. When the platform passes _LAMBDA_TELEMETRY_LOG_FD the
// records are written there as length-prefixed frames instead, and keep their newlines.
//
// The current request id is kept on globalThis under a registered symbol (as Lambda's
// runtime does) so that log lines from code loaded twice still agree. Before the first
// invoke it is undefined, and Lambda prints the word "undefined".

import { format } from 'node:util';
import { writeSync } from 'node:fs';
import { asError, errorFieldsForJsonLog, formatErrorForTextLog } from './errors.mjs';

const REQUEST_ID = Symbol.for('aws.lambda.runtime.requestId');
const TENANT_ID = Symbol.for('aws.lambda.runtime.tenantId');

export function setRequestId(id) {
  globalThis[REQUEST_ID] = id;
}

export function setTenantId(id) {
  globalThis[TENANT_ID] = id;
}

// `mask` is OR-ed into the telemetry frame type to carry the level.
const LEVELS = {
  TRACE: { name: 'TRACE', priority: 1, mask: 0b00100 },
  DEBUG: { name: 'DEBUG', priority: 2, mask: 0b01000 },
  INFO: { name: 'INFO', priority: 3, mask: 0b01100 },
  WARN: { name: 'WARN', priority: 4, mask: 0b10000 },
  ERROR: { name: 'ERROR', priority: 5, mask: 0b10100 },
  FATAL: { name: 'FATAL', priority: 6, mask: 0b11000 },
};

const FRAME_TEXT = 0xa55a0003;
const FRAME_JSON = 0xa55a0002;

function textRecord(time, level, args) {
  return `${time}\t${globalThis[REQUEST_ID]}\t${level.name}\t${format(...args)}`;
}

function jsonRecord(time, level, args) {
  const record = { timestamp: time, level: level.name, requestId: globalThis[REQUEST_ID] };
  const tenantId = globalThis[TENANT_ID];
  if (tenantId !== undefined && tenantId !== null) record.tenantId = tenantId;

  if (args.length === 1) {
    // A single argument is kept as structured data when it serialises.
    record.message = args[0];
    try {
      return JSON.stringify(record, errorFieldsForJsonLog);
    } catch {
      record.message = format(args[0]);
      return JSON.stringify(record);
    }
  }

  record.message = format(...args);
  const error = args.find((a) => a instanceof Error);
  if (error) {
    record.errorType = error?.constructor?.name ?? 'UnknownError';
    record.errorMessage = error.message;
    record.stackTrace = typeof error.stack === 'string' ? error.stack.split('\n') : [];
  }
  return JSON.stringify(record);
}

function stdoutSink(render) {
  return (level, args) => {
    const line = render(new Date().toISOString(), level, args).replace(/\n/g, '\r');
    process.stdout.write(line + '\n');
  };
}

function telemetryFdSink(fd, render, frameType) {
  const header = Buffer.alloc(16);
  return (level, args) => {
    const now = new Date();
    let text = render(now.toISOString(), level, args);
    if (frameType === FRAME_TEXT) text += '\n';
    const body = Buffer.from(text, 'utf8');
    header.writeUInt32BE((frameType | level.mask) >>> 0, 0);
    header.writeUInt32BE(body.length, 4);
    header.writeBigInt64BE(BigInt(now.getTime()) * 1000n, 8);
    writeSync(fd, header);
    writeSync(fd, body);
  };
}

/** Logs an error the way the runtime reports its own failures ("Invoke Error", ...). */
export let logError = (_label, _error) => {};

export function patchConsole(env = process.env) {
  const json = env.AWS_LAMBDA_LOG_FORMAT?.toUpperCase() === 'JSON';
  const render = json ? jsonRecord : textRecord;

  let sink;
  const fdVar = env._LAMBDA_TELEMETRY_LOG_FD;
  if (fdVar !== undefined && fdVar !== null) {
    delete env._LAMBDA_TELEMETRY_LOG_FD;
    sink = telemetryFdSink(parseInt(fdVar, 10), render, json ? FRAME_JSON : FRAME_TEXT);
  } else {
    sink = stdoutSink(render);
  }

  const threshold = LEVELS[env.AWS_LAMBDA_LOG_LEVEL?.toUpperCase()] ?? LEVELS.TRACE;
  // Like Lambda, a call without arguments logs the message `undefined`.
  const at = (level) =>
    level.priority >= threshold.priority
      ? (message, ...params) => sink(level, [message, ...params])
      : () => {};

  console.trace = at(LEVELS.TRACE);
  console.debug = at(LEVELS.DEBUG);
  console.info = at(LEVELS.INFO);
  console.log = console.info;
  console.warn = at(LEVELS.WARN);
  console.error = at(LEVELS.ERROR);
  console.fatal = (message, ...params) => sink(LEVELS.FATAL, [message, ...params]);

  logError = json
    ? (_label, error) => console.error(asError(error))
    : (label, error) => console.error(label, formatErrorForTextLog(asError(error)));
}
