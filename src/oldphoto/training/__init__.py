"""Training: data sampling with on-the-fly damage, losses, and one resumable recipe per model."""
