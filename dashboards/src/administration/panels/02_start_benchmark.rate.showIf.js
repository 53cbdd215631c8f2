return context.panel.elements.some((e) => e.id === 'mode' && e.value === 'open_loop');
