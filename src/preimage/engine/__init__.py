"""The engine: the energy's data terms (objectives), priors (regularizers), the jitter canvas (transforms), the one
optimizer loop (optimize) and what makes it fast without changing what it computes (runtime)."""
