// Kappa's runtime for the managed nodejs18.x / nodejs20.x / nodejs22.x runtimes.
//
//   node /var/runtime/bootstrap.mjs            (cwd /var/task)
//
// Reads the handler from _HANDLER (or argv[2]), the code from LAMBDA_TASK_ROOT and the
// Runtime API address from AWS_LAMBDA_RUNTIME_API, then serves invocations until the
// process is killed. Written for Kappa from the documented behaviour of Lambda's Node.js
// runtime; no dependencies beyond Node itself (18 or later).

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UnhandledPromiseRejection } from './errors.mjs';
import { loadHandler } from './index.mjs';
import { logError, patchConsole } from './logging.mjs';
import { adoptRelease, primeRuntimeApiClient } from './prestart.mjs';
import { RuntimeApiClient } from './rapid.mjs';
import { Runtime, installEmptyEventLoopHook } from './runtime.mjs';
import { installAwsLambdaGlobal, streamingMode } from './streaming.mjs';

const RUNTIME_DIR = path.dirname(fileURLToPath(import.meta.url));
const NODE_MAJOR = process.versions.node.split('.')[0];
// Upper bound on waiting for the Runtime API while reporting a fatal error.
const FATAL_REPORT_TIMEOUT_MS = 5000;

/**
 * What Lambda's shell bootstrap exports before starting node. NODE_PATH has to be applied
 * to the already-running CommonJS loader as well, since node read it at startup.
 */
function prepareEnvironment(env) {
  if (!env.NODE_PATH) {
    const taskRoot = env.LAMBDA_TASK_ROOT || '/var/task';
    // Layers are at /opt; Kappa's unisolated mode (no mount namespace) says where they are.
    const opt = env._KAPPA_OPT_DIR || '/opt';
    env.NODE_PATH = [
      `${opt}/nodejs/node${NODE_MAJOR}/node_modules`,
      `${opt}/nodejs/node_modules`,
      `${RUNTIME_DIR}/node_modules`,
      RUNTIME_DIR,
      taskRoot,
    ].join(':');
    const Module = createRequire(import.meta.url)('node:module');
    if (typeof Module._initPaths === 'function') Module._initPaths();
  }
  if (!env.AWS_EXECUTION_ENV) env.AWS_EXECUTION_ENV = `AWS_Lambda_nodejs${NODE_MAJOR}.x`;
}

function warnAboutCallbackHandler(handler, env) {
  if (env.AWS_LAMBDA_NODEJS_DISABLE_CALLBACK_WARNING !== undefined) return;
  if (handler.length !== 3 || handler.constructor?.name === 'AsyncFunction') return;
  if (streamingMode(handler).streaming) return;
  console.warn(
    'AWS Lambda plans to remove support for callback-based function handlers starting with Node.js 24. ' +
      'You will need to update this function to use an async handler to use Node.js 24 or later. ' +
      'For more information and to provide feedback on this change, see ' +
      'https://github.com/aws/aws-lambda-nodejs-runtime-interface-client/issues/137. ' +
      'To disable this warning, set the AWS_LAMBDA_NODEJS_DISABLE_CALLBACK_WARNING environment variable.',
  );
}

async function main() {
  const env = process.env;
  prepareEnvironment(env);
  patchConsole(env);

  const address = env.AWS_LAMBDA_RUNTIME_API;
  const handlerString = env._HANDLER || process.argv[2];
  if (!address || !handlerString) {
    process.stderr.write(
      `kappa nodejs runtime: ${!address ? 'AWS_LAMBDA_RUNTIME_API' : '_HANDLER'} is not set\n`,
    );
    process.exit(1);
  }
  const appRoot = env.LAMBDA_TASK_ROOT || process.cwd();
  const client = new RuntimeApiClient(address);

  let runtime;
  let exiting = false;
  // Report against the current invocation, or as an init error before the first one.
  const reportFatalAndExit = (err, exitCode) => {
    if (exiting) return;
    exiting = true;
    const requestId = runtime?.currentRequestId;
    const posted = requestId
      ? client.postInvocationError(requestId, err)
      : client.postInitError(err);
    setTimeout(() => process.exit(exitCode), FATAL_REPORT_TIMEOUT_MS).unref();
    posted.catch(() => {}).finally(() => process.exit(exitCode));
  };

  process.on('uncaughtException', (err) => {
    logError('Uncaught Exception', err);
    reportFatalAndExit(err, 129);
  });
  process.on('unhandledRejection', (reason, promise) => {
    const err = new UnhandledPromiseRejection(reason, promise);
    logError('Unhandled Promise Rejection', err);
    reportFatalAndExit(err, 128);
  });
  installEmptyEventLoopHook();

  installAwsLambdaGlobal(env);
  let handler;
  try {
    handler = await loadHandler(appRoot, handlerString);
    warnAboutCallbackHandler(handler, env);
    runtime = new Runtime(client, handler, (err) => reportFatalAndExit(err, 129));
  } catch (err) {
    logError('Uncaught Exception', err);
    reportFatalAndExit(err, 129);
    return;
  }
  runtime.scheduleNext();
}

// Started ahead of the function (see prestart.mjs): everything above is loaded; wait for it.
const prestartFd = process.env._KAPPA_PRESTART_FD;
if (prestartFd !== undefined) {
  delete process.env._KAPPA_PRESTART_FD;
  await primeRuntimeApiClient();
  adoptRelease(Number(prestartFd));
}
await main();
