// Recipe select: every recipe from the panel's query "recipes"
// (Infinity: GET /api/v1/recipes).
const frame = (context.panel.data.series || []).find((f) => f.refId === 'recipes');
if (!frame) {
  return [];
}
const names = frame.fields.find((x) => x.name === 'name');
const descriptions = frame.fields.find((x) => x.name === 'description');
if (!names) {
  return [];
}
return Array.from(names.values).map((name, i) => ({
  value: name,
  label: descriptions && descriptions.values[i] ? name + ': ' + descriptions.values[i] : name,
}));
