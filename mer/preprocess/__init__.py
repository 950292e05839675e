"""Pure image work: frames in, clip array out. Knows nothing of datasets."""
