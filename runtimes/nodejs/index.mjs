// Loads the user's handler from a handler string such as `index.handler`,
// `src/handlers/app.handler` or `lib/mod.nested.fn`.
//
// The file is named index.mjs on purpose: CommonJS resolution failures mention the module
// that asked for the file ("Require stack:\n- /var/runtime/index.mjs"), and this is the
// module that asks, exactly as in Lambda's Node runtime.
//
// Resolution, relative to the task root (LAMBDA_TASK_ROOT), for `<dir>/<module>.<path>`:
//   1. `<dir>/<module>` with no extension, if it exists (file or directory): require()
//   2. `<dir>/<module>.js`: require(), unless the nearest package.json says "type": "module"
//   3. `<dir>/<module>.js` as an ES module (only with "type": "module"), then `.mjs` by
//      import(), then `.cjs` by require()
//   4. otherwise Node's own resolution of `<module>` from the task root (node_modules,
//      NODE_PATH), by require()
// `<path>` may be dotted to reach nested exports.

import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  HandlerNotFound,
  ImportModuleError,
  MalformedHandlerName,
  UserCodeSyntaxError,
} from './errors.mjs';

const require = createRequire(import.meta.url);

function requireIfExists(file) {
  return existsSync(file) ? require(file) : undefined;
}

async function importIfExists(file) {
  return existsSync(file) ? import(pathToFileURL(file).href) : undefined;
}

/** Whether the package.json governing `folder` declares "type": "module". */
function folderIsEsmPackage(folder) {
  for (let dir = folder; ; dir = path.dirname(dir)) {
    if (dir.endsWith('/node_modules')) return false;
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        return JSON.parse(readFileSync(manifest, 'utf8'))?.type === 'module';
      } catch (err) {
        console.warn(
          `${manifest} cannot be read, it will be ignored for ES module detection purposes.`,
          err,
        );
        return false;
      }
    }
    if (dir === '/' || dir === path.dirname(dir)) return false;
  }
}

async function loadModule(appRoot, moduleDir, moduleName) {
  const base = path.resolve(appRoot, moduleDir, moduleName);

  const bare = requireIfExists(base);
  if (bare) return bare;

  const jsIsEsm = existsSync(base + '.js') && folderIsEsmPackage(path.dirname(base + '.js'));
  if (!jsIsEsm) {
    const cjs = requireIfExists(base + '.js');
    if (cjs) return cjs;
  }

  const loaded =
    (jsIsEsm && (await importIfExists(base + '.js'))) ||
    (await importIfExists(base + '.mjs')) ||
    requireIfExists(base + '.cjs');
  if (loaded) return loaded;

  // Node resolution from the task root, so that packages in node_modules or on NODE_PATH
  // work as handlers (`require` alone would resolve relative to this runtime's directory).
  return require(require.resolve(moduleName, { paths: [appRoot, moduleDir] }));
}

/**
 * @returns {Promise<Function>} the handler function
 * @throws Runtime.MalformedHandlerName, Runtime.ImportModuleError,
 *   Runtime.UserCodeSyntaxError, Runtime.HandlerNotFound, or whatever the user's module
 *   threw while it was being evaluated.
 */
export async function loadHandler(appRoot, handlerString) {
  if (handlerString.includes('..')) {
    throw new MalformedHandlerName(
      `'${handlerString}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }

  // `src/handlers/app.nested.fn` -> dir `src/handlers/`, module `app`, path `nested.fn`
  const last = path.basename(handlerString);
  const moduleDir = handlerString.slice(0, handlerString.lastIndexOf(last));
  const dot = last.indexOf('.');
  if (dot < 0) throw new MalformedHandlerName('Bad handler');
  const moduleName = last.slice(0, dot);
  const exportPath = last.slice(dot + 1);

  let userModule;
  try {
    userModule = await loadModule(appRoot, moduleDir, moduleName);
  } catch (err) {
    if (err instanceof SyntaxError) throw new UserCodeSyntaxError(err);
    if (err?.code === 'MODULE_NOT_FOUND') throw new ImportModuleError(err);
    throw err;
  }

  const handler = exportPath.split('.').reduce((obj, key) => obj && obj[key], userModule);
  if (!handler) throw new HandlerNotFound(`${handlerString} is undefined or not exported`);
  if (typeof handler !== 'function') throw new HandlerNotFound(`${handlerString} is not a function`);
  return handler;
}
