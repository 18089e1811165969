"""Prompt templates, group-term data and ready generation specs shipped with vdata-hub."""
