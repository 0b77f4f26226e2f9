// Started ahead of the function: wait for it, then become its runtime.
//
// Kappa may start this runtime while the environment waits in its pool, before the function is
// known: with _KAPPA_PRESTART_FD naming a pipe, only the variables every function gets, and `/`
// as its working directory. By the time bootstrap.mjs runs its first line, every module it
// imports is loaded. Once the function's code is attached, Kappa writes to the pipe, as JSON up
// to end of file, `{"argv": [...], "env": [[name, value], ...], "cwd": "/var/task"}`; the runtime
// adopts the environment and directory and goes on as if it had just been started with them.
//
// Variables node, the dynamic loader or the C library read as the process starts cannot be
// adopted afterwards, and node cannot execute itself again: Kappa does not prestart a runtime
// for a function that sets one (the list below is the server's too). Should one differ all the
// same, the runtime says so and exits rather than run with the wrong settings.

import { closeSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { RuntimeApiClient } from './rapid.mjs';

const START_PREFIXES = ['NODE_', 'UV_', 'OPENSSL_', 'SSL_CERT_', 'LD_', 'LC_', 'MALLOC_'];
const START_NAMES = new Set(['LANG', 'HOME', 'GLIBC_TUNABLES', 'TZ']);

export function readAtStart(name) {
  return START_NAMES.has(name) || START_PREFIXES.some((prefix) => name.startsWith(prefix));
}

/** The environment this process was executed with (process.env may have changed since). */
function environmentAtExec() {
  try {
    const block = readFileSync('/proc/self/environ', 'latin1');
    const env = {};
    for (const item of block.split('\0')) {
      const equals = item.indexOf('=');
      if (equals > 0) env[item.slice(0, equals)] = Buffer.from(item.slice(equals + 1), 'latin1').toString();
    }
    return env;
  } catch {
    return { ...process.env };
  }
}

/**
 * Send the Runtime API client's first requests (a /next, then a response) to a throwaway
 * loopback server of this process's own, so that the code they run through (node's HTTP client
 * and parser, its sockets, this runtime's client) is loaded and compiled before the function
 * arrives rather than on its first invocation. Both are closed again; a failure only costs that
 * time back.
 */
export async function primeRuntimeApiClient() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'Lambda-Runtime-Aws-Request-Id': 'prime', 'Content-Type': 'application/json' });
      res.end('{}');
    });
  });
  try {
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const client = new RuntimeApiClient(`127.0.0.1:${server.address().port}`);
    try {
      await client.nextInvocation();
      await client.postInvocationResponse('prime', '{}');
    } finally {
      client.agent.destroy();
    }
  } catch {
    // Not primed: the first invocation pays for it, as without a prestart.
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

/** Block until the function arrives on `fd`, then adopt its environment and directory. */
export function adoptRelease(fd) {
  const release = JSON.parse(readFileSync(fd, 'utf8'));
  closeSync(fd);
  const env = Object.fromEntries(release.env);
  const atExec = environmentAtExec();
  const names = new Set([...Object.keys(atExec), ...Object.keys(env)]);
  const differing = [...names].filter((name) => readAtStart(name) && atExec[name] !== env[name]);
  if (differing.length > 0) {
    process.stderr.write(
      `kappa nodejs runtime: started before its function, it cannot take ${differing.join(', ')}` +
        ' (read as node starts)\n',
    );
    process.exit(1);
  }
  process.chdir(release.cwd);
  // What node set itself as it started it would have set for the function's environment too.
  const added = Object.entries(process.env).filter(([name]) => !(name in atExec));
  for (const name of Object.keys(process.env)) delete process.env[name];
  Object.assign(process.env, env);
  for (const [name, value] of added) if (!(name in env)) process.env[name] = value;
}
