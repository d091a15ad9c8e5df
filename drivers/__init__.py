"""MD engine clients (installed as ``aptnn.drivers``): each feeds frames from a running simulation to the
APT engine and streams dM/dt to HDF5."""
