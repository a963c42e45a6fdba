"""The API faces: each maps one wire format onto the storage core."""
