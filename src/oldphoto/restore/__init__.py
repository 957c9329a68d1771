"""`oldphoto restore`: pure stage functions composed by :class:`~oldphoto.restore.pipeline.Restorer`."""
