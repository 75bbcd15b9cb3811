"""Omics Latent Explorer core: data, preprocessing, models, training, runs, embeddings,
perturbation, generation and evaluation. Plain Python + torch; never imports streamlit.

Nothing happens at import time; heavy libraries are imported by the modules that need them.
"""

__version__ = "0.1.0"
