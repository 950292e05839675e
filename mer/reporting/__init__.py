"""Figures and tables built from predictions and the tracking store."""
