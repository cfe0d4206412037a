"""Noise generators of PiNI (paper Table 1) and the Gaussian reparameterisation."""
from .config import GENERATORS, NoiseConfig, NoiseConfigError
from .sampling import draw_eps, fuse, positive_sigma, reparameterise
from .text import LearnableEmbeddings, TextFeatureMLP, build_text_generator
from .visual import AuthorsImageCNN, FeatureCA, FeatureMLP, ImageCA, ImageCNN, ImageMLP, build_visual_generator

__all__ = [
    "GENERATORS", "NoiseConfig", "NoiseConfigError", "draw_eps", "fuse", "positive_sigma", "reparameterise",
    "LearnableEmbeddings", "TextFeatureMLP", "build_text_generator", "FeatureCA", "FeatureMLP", "ImageCA",
    "ImageCNN", "ImageMLP", "AuthorsImageCNN", "build_visual_generator",
]
