"""What tasks and extraction both stand on, below both: audio decoding and its errors, decode workers,
batch plans, dataset fingerprints, the cache root, and the column and split names they share.
Neither ``hf_fusion.tasks`` nor ``hf_fusion.extraction`` imports the other."""
