const value = (id) => (context.panel.elements.find((e) => e.id === id) || {}).value;
return value('workload') !== 'http' && value('dataset') === 'random';
