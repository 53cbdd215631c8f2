// Start a service: the body of POST /api/v1/services, {recipe, params}.
// Parameters are a JSON object typed in the "Parameters" box (the recipes and
// their parameters are listed below the form); the API checks types and bounds.
// Throwing stops the submit before any request.
const byId = {};
for (const e of context.panel.elements) {
  byId[e.id] = e.value;
}
const recipe = byId.recipe === undefined || byId.recipe === null ? '' : String(byId.recipe);
if (recipe === '') {
  throw new Error('Recipe is empty: choose a recipe');
}
const text = byId.params === undefined || byId.params === null ? '' : String(byId.params).trim();
let params = {};
if (text !== '') {
  try {
    params = JSON.parse(text);
  } catch (e) {
    throw new Error('Parameters must be a JSON object: ' + e.message);
  }
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new Error('Parameters must be a JSON object, e.g. {"port": 8000}');
  }
}
return { recipe, params };
