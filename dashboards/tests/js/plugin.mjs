// Runs form code from the built dashboards the way Business Forms 6.x does:
// each snippet is compiled with the single parameter `context` (the plugin's
// `new Function('context', code)`), here inside a fresh V8 context holding only
// JavaScript's built-ins, so code that reaches for a global the plugin does not
// give it (window, fetch, console, …) fails; and the context is a strict proxy,
// so code that reaches for a key the plugin does not pass fails too.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const here = dirname(fileURLToPath(import.meta.url));
export const distDir = join(here, '..', '..', 'dist');

export function dashboard(name) {
  return JSON.parse(readFileSync(join(distDir, `${name}.json`), 'utf8'));
}

export function panel(dashboardName, title) {
  const p = dashboard(dashboardName).panels.find((x) => x.title === title);
  if (!p) {
    throw new Error(`${dashboardName}: no panel titled ${title}`);
  }
  return p;
}

/** A read-only view of `obj` that throws on any key it does not have. */
export function strict(obj, path = 'context') {
  return new Proxy(obj, {
    get(target, key) {
      if (typeof key === 'symbol') {
        return target[key];
      }
      if (!(key in target)) {
        throw new Error(`code reached for ${path}.${String(key)}, which the plugin does not pass`);
      }
      const v = target[key];
      const isPlain = v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype;
      return isPlain ? strict(v, `${path}.${String(key)}`) : v;
    },
    set(_t, key) {
      throw new Error(`code assigned ${path}.${String(key)}`);
    },
  });
}

/** Compiles `code` as the plugin does; returns `(context) => result`. */
export function compile(code) {
  const sandbox = vm.createContext({});
  const fn = vm.runInContext(`(function (context) {\n${code}\n})`, sandbox);
  // Values made in the sandbox have its own Object.prototype: hand back plain
  // data (what the plugin does with them, JSON for a payload, is unchanged).
  return (context) => {
    const result = fn(context);
    const thenable = result !== null && typeof result === 'object' && typeof result.then === 'function';
    return result === undefined || thenable ? result : JSON.parse(JSON.stringify(result));
  };
}

/** The elements as the plugin passes them: the panel's, with `values` applied by id. */
export function elements(formPanel, values = {}) {
  return formPanel.options.elements.map((e) => ({
    ...e,
    value: Object.prototype.hasOwnProperty.call(values, e.id) ? values[e.id] : e.value,
  }));
}

/** getPayload's context: only panel.elements, panel.initial and utils.fileToBase64. */
export function payloadContext(formPanel, values = {}) {
  return strict({
    panel: { elements: elements(formPanel, values), initial: {} },
    utils: { fileToBase64: () => Promise.reject(new Error('no files in these forms')) },
  });
}

/** getOptions' context: panel.data, panel.elements, grafana.replaceVariables. */
export function optionsContext(formPanel, series) {
  return strict({
    panel: { data: { series, state: 'Done' }, elements: elements(formPanel) },
    grafana: { replaceVariables: (s) => s },
  });
}

/** update.code's context (the keys these forms may use). */
export function updateContext(formPanel, response) {
  const calls = { success: [], error: [], refresh: 0 };
  const context = strict({
    panel: { response, elements: elements(formPanel), initial: {}, data: { series: [] } },
    grafana: {
      notifySuccess: (m) => calls.success.push(m),
      notifyError: (m) => calls.error.push(m),
      refresh: () => {
        calls.refresh += 1;
      },
      templateService: {},
      replaceVariables: (s) => s,
    },
  });
  return { context, calls };
}

/**
 * One press of a form's submit button, as the plugin does it with
 * `payloadMode: "custom"`: getPayload, then (if it did not throw) `fetchFn(url,
 * init)` with the JSON body, then update.code with the response. Returns what
 * the panel shows: `{ error }` when getPayload refused, else the notifications.
 */
export async function submit(formPanel, values, fetchFn, baseUrl = '') {
  const update = formPanel.options.update;
  if (update.payloadMode !== 'custom') {
    throw new Error(`payloadMode is ${update.payloadMode}: getPayload would be ignored`);
  }
  let payload;
  try {
    payload = compile(update.getPayload)(payloadContext(formPanel, values));
  } catch (e) {
    return { error: e.message, requested: false };
  }
  const headers = { 'Content-Type': update.contentType };
  const response = await fetchFn(baseUrl + update.url, {
    method: update.method,
    headers,
    body: JSON.stringify(payload),
  });
  const { context, calls } = updateContext(formPanel, response);
  await compile(update.code)(context);
  return { requested: true, payload, ...calls };
}
