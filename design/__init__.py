"""One design model for every tool: what a garment is made of (`model`) and how it is written down (`recipe`)."""
