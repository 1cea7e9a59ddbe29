"""emoji-vq: discrete-latent emoji generation (VQ-VAE, VQ-VAE-2 and autoregressive priors).

Notebooks in ``notebooks/`` tell the story; the modules here do the work.
"""

__version__ = "0.1.0"
