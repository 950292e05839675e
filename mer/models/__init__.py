"""Networks (paper model, its baseline) and the LightningModule that trains them."""
