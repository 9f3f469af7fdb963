"""Deterministic dataset builders from offline sources (see DESIGN.md, "Data")."""
