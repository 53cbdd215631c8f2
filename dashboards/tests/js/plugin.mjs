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

/** getPayload's context: only panel.elements, panel.initial and utils.fileToBase64
 * (request.ts getPayloadForRequest). */
export function payloadContext(formPanel, values = {}) {
  return strict({
    panel: { elements: elements(formPanel, values), initial: {} },
    utils: { fileToBase64: () => Promise.reject(new Error('no files in these forms')) },
  });
}

/** showIf's context: only panel.elements (form-element.ts). */
export function showIfContext(formPanel, values = {}) {
  return strict({ panel: { elements: elements(formPanel, values) } });
}

/** getOptions' context: panel.data, panel.elements, grafana.replaceVariables. */
export function optionsContext(formPanel, series) {
  return strict({
    panel: { data: { series, state: 'Done' }, elements: elements(formPanel) },
    grafana: { replaceVariables: (s) => s },
  });
}

function grafanaServices(calls) {
  return {
    locationService: {},
    templateService: {},
    notifyError: (m) => calls.error.push(m),
    notifySuccess: (m) => calls.success.push(m),
    notifyWarning: (m) => calls.warning.push(m),
    eventBus: {},
    appEvents: {},
    refresh: () => {
      calls.refresh += 1;
    },
  };
}

function newCalls() {
  return { success: [], error: [], warning: [], refresh: 0, panelError: [], submit: [] };
}

/** update.code's context, with the keys executeCustomCode passes (FormPanel.tsx). */
export function updateContext(formPanel, response) {
  const calls = newCalls();
  const context = strict({
    grafana: { ...grafanaServices(calls), backendService: {} },
    panel: {
      options: formPanel.options,
      data: { series: [] },
      onOptionsChange: () => {},
      elements: elements(formPanel),
      onChangeElements: () => {},
      patchFormValue: () => {},
      setFormValue: () => {},
      formValue: {},
      setInitial: () => {},
      initial: {},
      initialRequest: () => Promise.resolve(),
      response,
      enableSubmit: () => calls.submit.push(true),
      disableSubmit: () => calls.submit.push(false),
      sectionsUtils: {},
    },
    utils: { toDataQueryResponse: () => ({}), fileToBase64: () => Promise.reject(new Error('no files')) },
  });
  return { context, calls };
}

/** elementValueChanged's context (FormPanel.tsx onElementValueChanged). */
export function valueChangedContext(formPanel, values = {}) {
  const calls = newCalls();
  const els = elements(formPanel, values);
  const context = strict({
    element: els[0],
    grafana: grafanaServices(calls),
    panel: {
      options: formPanel.options,
      data: { series: [] },
      onOptionsChange: () => {},
      elements: els,
      onChangeElements: () => {},
      patchFormValue: () => {},
      setFormValue: () => {},
      formValue: () => ({}),
      sectionsUtils: {},
      initial: {},
      setError: (m) => calls.panelError.push(m),
      enableReset: () => {},
      disableReset: () => {},
      enableSubmit: () => calls.submit.push(true),
      disableSubmit: () => calls.submit.push(false),
      enableSaveDefault: () => {},
      disableSaveDefault: () => {},
      initialRequest: () => Promise.resolve(),
    },
    utils: { toDataQueryResponse: () => ({}) },
  });
  return { context, calls };
}

/**
 * One press of a form's submit button, as the plugin's updateRequest does it
 * with `payloadMode: "custom"`: getPayload (a throw aborts before any request,
 * as in the plugin, where nothing catches it), then `fetchFn(url, init)` with
 * the JSON body (a rejected fetch is shown with setError and update.code runs
 * with a null response), then update.code.
 */
export async function submit(formPanel, values, fetchFn) {
  const update = formPanel.options.update;
  if (update.payloadMode !== 'custom') {
    throw new Error('payloadMode is ' + update.payloadMode + ': getPayload would be ignored');
  }
  const payload = compile(update.getPayload)(payloadContext(formPanel, values));
  let panelError = '';
  const response = await fetchFn(update.url, {
    method: update.method,
    headers: { 'Content-Type': update.contentType },
    body: JSON.stringify(payload),
  }).catch((e) => {
    panelError = e.toString();
    return null;
  });
  const { context, calls } = updateContext(formPanel, response);
  await compile(update.code)(context);
  return { payload, ...calls, panelError };
}
