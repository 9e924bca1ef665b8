"""One module per dataset: the only place a dataset's name or quirks appear."""
