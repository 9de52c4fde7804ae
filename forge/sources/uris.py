"""What an image URI may be: the file suffixes that are images and the schemes read over a network."""

from __future__ import annotations

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}

# object stores, read through pyarrow's filesystems with the credentials of the usual environment variables
# (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*); their SDKs retry transient failures themselves
OBJECT_STORES = ("s3://", "gs://", "gcs://", "abfs://", "abfss://")
REMOTE = ("http://", "https://", *OBJECT_STORES)  # read by URI, never as local paths
