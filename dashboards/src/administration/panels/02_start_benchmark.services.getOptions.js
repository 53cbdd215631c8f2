// Service select: only running services, from the panel's query "services"
// (Infinity: GET /api/v1/services). Business Forms passes context.panel.data
// (PanelData), context.panel.elements and context.grafana.replaceVariables.
const frame = (context.panel.data.series || []).find((f) => f.refId === 'services');
if (!frame) {
  return [];
}
const field = (name) => {
  const f = frame.fields.find((x) => x.name === name);
  return f ? Array.from(f.values) : [];
};
const ids = field('id');
const statuses = field('status');
const recipes = field('recipe');
const options = [];
ids.forEach((id, i) => {
  if (statuses[i] === 'running') {
    options.push({ value: id, label: recipes[i] ? id + ' (' + recipes[i] + ')' : id });
  }
});
return options;
