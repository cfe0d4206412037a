"""The package version: a leaf module, so code inside pini_core can record it without
importing the package facade (pini_core/__init__.py), which imports the API lazily."""
__version__ = "0.1.0"
