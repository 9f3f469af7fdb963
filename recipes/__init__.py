"""Training recipes: one LightningModule per family, DataModules, and the `zoo train` entry point.

Models in `zoo/` know nothing of training; losses, optimisers, schedules and discriminators live here.
"""
