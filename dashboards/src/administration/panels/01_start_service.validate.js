// Shared by the recipe select's getOptions, getPayload and elementValueChanged
// (the build joins this file in front of each; form code cannot import). No
// dollar sign anywhere: Grafana replaces dashboard variables in form code before
// compiling it.
//
// A recipe the API's backend cannot run (GET /api/v1/recipes: runnable "no",
// with runnable_reason) is listed with its reason, and its option's value
// carries the reason as well, since getPayload sees only the elements' values.
// A recipe name never holds a space, so such a value is never taken for one.
const NOT_RUNNABLE_HERE = ' (not runnable here: ';

function notRunnableValue(name, reason) {
  return name + NOT_RUNNABLE_HERE + reason + ')';
}

// The body of POST /api/v1/services, {recipe, params}, or what is wrong:
// {error} (and notRunnable: true when the recipe cannot run here).
function startServiceRequest(elements) {
  const byId = {};
  for (const e of elements) {
    byId[e.id] = e.value;
  }
  const recipe = byId.recipe === undefined || byId.recipe === null ? '' : String(byId.recipe);
  if (recipe === '') {
    return { error: 'Recipe is empty: choose a recipe' };
  }
  const at = recipe.indexOf(NOT_RUNNABLE_HERE);
  if (at >= 0) {
    const rest = recipe.slice(at + NOT_RUNNABLE_HERE.length);
    const reason = rest.endsWith(')') ? rest.slice(0, -1) : rest;
    return {
      error: 'Recipe ' + recipe.slice(0, at) + ' cannot run on the API\'s backend: ' + reason,
      notRunnable: true,
    };
  }
  const text = byId.params === undefined || byId.params === null ? '' : String(byId.params).trim();
  let params = {};
  if (text !== '') {
    try {
      params = JSON.parse(text);
    } catch (e) {
      return { error: 'Parameters must be a JSON object: ' + e.message };
    }
    if (params === null || typeof params !== 'object' || Array.isArray(params)) {
      return { error: 'Parameters must be a JSON object, e.g. {"port": 8000}' };
    }
  }
  return { payload: { recipe, params } };
}
