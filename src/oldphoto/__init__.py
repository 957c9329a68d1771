"""oldphoto: bring damaged old photographs back to life."""

__version__ = "0.1.0"
