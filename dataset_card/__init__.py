"""Dataset card and pull-request templates shipped with vdata-hub."""
