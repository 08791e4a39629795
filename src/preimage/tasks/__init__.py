"""The visualizations built on the engine: inversion, activation maximization and caricature, HOG template
pictures (templates) and the demo."""
