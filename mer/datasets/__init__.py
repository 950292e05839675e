"""Readers of the licensed corpora (one module per dataset layout), their annotation workbooks, and the clip record they all produce."""
