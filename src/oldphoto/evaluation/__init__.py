"""`oldphoto evaluate`: metrics, the methods compared, and the runner."""
