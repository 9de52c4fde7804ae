"""Model wrappers used by forge's perception UDFs: loaded once per worker through `from_pretrained`."""
