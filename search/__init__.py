"""ecgsearch: a multi-objective architecture search service for 12-lead ECG classifiers.

Built on ``ecgnet`` (models, data, training) and Optuna (studies, storage, samplers).
"""

__version__ = "0.1.0"
